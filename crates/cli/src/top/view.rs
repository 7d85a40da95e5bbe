//! How `steward top` draws its model: a header (master, listen queues, last reload),
//! a table of the workers, and the keys.

use ratatui::{
    layout::{Constraint, Layout},
    style::{Modifier, Style},
    text::Line,
    widgets::{Paragraph, Row, Table},
    Frame,
};
use steward_master::stats::Status;

use super::Model;

pub(crate) fn draw(frame: &mut Frame, model: &Model) {
    let [header, table, footer] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(header_lines(model)), header);
    if let Some(status) = &model.status {
        frame.render_widget(workers(status, model), table);
    }
    let keys = "r reload  c chain reload  + worker  - worker  q quit";
    frame.render_widget(
        Paragraph::new(keys).style(Style::default().add_modifier(Modifier::REVERSED)),
        footer,
    );
}

fn header_lines(model: &Model) -> Vec<Line<'static>> {
    let Some(s) = &model.status else {
        return vec![Line::from(model.error.clone().unwrap_or_default())];
    };
    let serving = s.serving.map_or("none".into(), |g| g.to_string());
    let mut lines = vec![Line::from(format!(
        "steward {} pid {} — {} — generation {} (serving {serving}) — {} workers wanted — master {} RSS, {} fds",
        env!("CARGO_PKG_VERSION"),
        s.pid,
        s.state,
        s.generation,
        s.workers_wanted,
        bytes(s.master.rss_bytes),
        s.master.open_fds.unwrap_or(0),
    ))];
    let queues: Vec<String> = s
        .sockets
        .iter()
        .map(|q| match (q.queue, q.backlog) {
            (Some(n), Some(max)) => format!("{} {n}/{max}", q.address),
            _ => format!("{} -", q.address),
        })
        .collect();
    lines.push(Line::from(format!("listen queue: {}", queues.join("  "))));
    lines.push(Line::from(reload_line(s)));
    let note = model
        .error
        .as_ref()
        .map(|e| format!("! {e}"))
        .or(model.message.clone());
    lines.push(Line::from(note.unwrap_or_default()));
    lines
}

fn reload_line(s: &Status) -> String {
    let last = match &s.last_reload {
        None => "last reload: none".to_owned(),
        Some(r) if r.ok => format!(
            "last reload: generation {} ok in {} ms",
            r.generation,
            r.elapsed_ms.unwrap_or(0)
        ),
        Some(r) => format!(
            "last reload: generation {} failed: {}",
            r.generation,
            r.error.as_deref().unwrap_or("")
        ),
    };
    let now = s.reloading.as_ref().map_or(String::new(), |r| {
        format!(
            " — reloading to generation {} for {} ms",
            r.generation, r.elapsed_ms
        )
    });
    format!(
        "{last}{now} — reloads ok {} failed {} — restarts crash {} signal {} killed {}",
        s.reloads.ok, s.reloads.failed, s.restarts.crash, s.restarts.signal, s.restarts.killed
    )
}

fn workers<'a>(s: &'a Status, model: &'a Model) -> Table<'a> {
    let header = Row::new([
        "ID", "GEN", "PID", "STATE", "AGE", "RSS", "CPU%", "RESTARTS",
    ])
    .style(Style::default().add_modifier(Modifier::REVERSED));
    let rows = s.workers.iter().map(|w| {
        let cpu = model
            .cpu_percent
            .get(&w.pid)
            .map_or("-".into(), |p| format!("{p:.1}"));
        Row::new([
            w.id.to_string(),
            w.generation.to_string(),
            w.pid.to_string(),
            w.state.clone(),
            age(w.age_ms),
            bytes(w.process.rss_bytes),
            cpu,
            w.respawns.to_string(),
        ])
    });
    let widths = [4, 5, 8, 10, 10, 9, 6, 9].map(Constraint::Length);
    Table::new(rows, widths).header(header)
}

/// `1h02m`, `3m04s`, `12.3s`.
fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{:.1}s", ms as f64 / 1000.0),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

/// `12.3M`, as uwsgitop writes sizes.
fn bytes(n: u64) -> String {
    let mut value = n as f64;
    for unit in ["B", "K", "M", "G"] {
        if value < 1024.0 {
            return format!("{value:.1}{unit}");
        }
        value /= 1024.0;
    }
    format!("{value:.1}T")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_sizes_read_short() {
        assert_eq!(age(12_345), "12.3s");
        assert_eq!(age(184_000), "3m04s");
        assert_eq!(age(3_720_000), "1h02m");
        assert_eq!(bytes(2_411_724), "2.3M");
    }
}
