//! The simulator's populations, its parameter sweep, and how their outcomes are written: a
//! Markdown table for BENCHMARKS.md, an SVG chart of the sweep, and a one-line summary.

use super::{Group, Outcome, Owners, Params, Scenario, Strategy};
use std::fmt::Write as _;

fn scenario(name: &str, params: &Params, groups: Vec<Group>) -> Scenario {
    Scenario { name: name.into(), groups, params: params.clone() }
}

fn one_owner(mut g: Group) -> Group {
    g.owners = Owners::One;
    g
}

/// The headline adversary: 30% of the keys, each under its own account, lying together whenever
/// they hold every replica of a task they can see, and re-entering with fresh bonded keys.
pub fn cartel(params: &Params) -> Scenario {
    scenario("cartel 30%, many owners", params, vec![Group::new("cartel", Strategy::Cartel, 0.3)])
}

/// Every population, at `params`.
pub fn scenarios(params: &Params) -> Vec<Scenario> {
    let liar = |p: f64| Strategy::Liar { p };
    let budget = params.min_bond * (params.workers as u128 * 3 / 10) * 2;
    vec![
        scenario("all honest", params, vec![]),
        scenario("10% always lie", params, vec![Group::new("liars", liar(1.0), 0.1)]),
        scenario("30% always lie", params, vec![Group::new("liars", liar(1.0), 0.3)]),
        scenario("30% lie with q = 0.5", params, vec![Group::new("liars", liar(0.5), 0.3)]),
        scenario("30% lie with q = 0.1", params, vec![Group::new("liars", liar(0.1), 0.3)]),
        scenario("30% lie with q = 0.01", params, vec![Group::new("liars", liar(0.01), 0.3)]),
        scenario("30% lazy (constant output)", params, vec![Group::new("lazy", Strategy::Lazy, 0.3)]),
        scenario("cartel 10%, one owner", params, vec![one_owner(Group::new("cartel", Strategy::Cartel, 0.1))]),
        scenario("cartel 30%, one owner", params, vec![one_owner(Group::new("cartel", Strategy::Cartel, 0.3))]),
        scenario("cartel 10%, many owners", params, vec![Group::new("cartel", Strategy::Cartel, 0.1)]),
        cartel(params),
        scenario("10% copiers", params, vec![Group::new("copiers", Strategy::Copier, 0.1)]),
        scenario("10% griefers", params, vec![Group::new("griefers", Strategy::Griefer, 0.1)]),
        scenario(
            "attacker with a bond budget (30% of keys, 2 bonds each)",
            params,
            vec![Group { budget: Some(budget), ..Group::new("attacker", Strategy::Cartel, 0.3) }],
        ),
        scenario("all honest, adaptive replication (audit 10%)", &adaptive(params), vec![]),
    ]
}

/// `params` with jobs that allow adaptive replication, audited at 10%.
fn adaptive(params: &Params) -> Params {
    Params { adaptive: Some(10), ..params.clone() }
}

/// The headline cartel over a small grid: audit and hidden-replica rates (against replicas per
/// task), the replica count, and the bond-to-price ratio.
pub fn sweep(params: &Params) -> Vec<Scenario> {
    let mut out = Vec::new();
    for (audit, extra) in [(0.0, 0.0), (0.02, 0.02), (0.05, 0.05), (0.1, 0.05), (0.2, 0.1), (0.4, 0.1)] {
        let p = Params { audit_rate: audit, extra_rate: extra, ..params.clone() };
        out.push(Scenario { name: format!("audit {audit}, extra {extra}"), ..cartel(&p) });
    }
    for canary in [0.0, 0.2] {
        let p = Params { canary_rate: canary, ..params.clone() };
        out.push(Scenario { name: format!("known-answer checks {canary}"), ..cartel(&p) });
    }
    let p = Params { replicas: 3, ..params.clone() };
    out.push(Scenario { name: "3 replicas".into(), ..cartel(&p) });
    let p = Params { price: params.price * 10, ..params.clone() };
    out.push(Scenario { name: format!("bond = {}× price", params.min_bond / u128::from(p.price)), ..cartel(&p) });
    out
}

/// The cheating group of a run (the last), if any.
fn cheater(o: &Outcome) -> Option<&super::GroupOutcome> {
    o.groups.get(1..).and_then(|g| g.last())
}

fn per_replica(o: &Outcome, g: &super::GroupOutcome) -> String {
    g.profit_per_replica(o.params.compute_cost, o.params.price).map_or("–".into(), |v| format!("{v:+.3}"))
}

/// The cheater's net loss per accepted wrong signature (a wrong task signed by two of its keys
/// counts twice), in replica prices.
pub fn loss_per_wrong(o: &Outcome) -> Option<f64> {
    let g = cheater(o)?;
    (g.wrong_accepted > 0)
        .then(|| -g.profit(o.params.compute_cost, o.params.price) / g.wrong_accepted as f64 / o.params.price as f64)
}

fn loss_cell(o: &Outcome) -> String {
    match (cheater(o), loss_per_wrong(o)) {
        (None, _) => "–".into(),
        (Some(_), Some(l)) => format!("{l:.0}"),
        (Some(g), None) if g.strategy.is_some_and(Strategy::lies) => "none accepted".into(),
        (Some(_), None) => "–".into(),
    }
}

fn eject_cell(o: &Outcome) -> String {
    match cheater(o) {
        Some(g) if g.ejected > 0 => format!(
            "{} of {} keys ({} by a known-answer check), median {:.0} s",
            g.ejected,
            g.keys,
            g.barred,
            g.median_eject_secs.unwrap_or(0.0)
        ),
        Some(g) => format!("0 of {}", g.keys),
        None => "–".into(),
    }
}

/// The populations' table.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut s = String::new();
    s.push_str("| population | wrong results accepted per 10,000 tasks | replicas per verified task | tasks failed | honest profit per replica | cheater profit per replica | cheater's net loss per accepted wrong signature (× price) | cheater keys ejected | money conserved |\n");
    s.push_str("|---|---:|---:|---:|---:|---:|---:|---|---|\n");
    for o in outcomes {
        let cheat = cheater(o).map_or("–".into(), |g| per_replica(o, g));
        let _ = writeln!(
            s,
            "| {} | {:.1} | {:.3} | {} | {} | {} | {} | {} | {} |",
            o.scenario,
            o.wrong_per_10k(),
            o.replicas_per_verified(),
            o.tasks_failed,
            per_replica(o, o.honest()),
            cheat,
            loss_cell(o),
            eject_cell(o),
            if o.conserved { "yes" } else { "NO" },
        );
    }
    s
}

/// The sweep's table: the trade-off between verification spending and what cheating buys.
pub fn sweep_table(outcomes: &[Outcome]) -> String {
    let mut s = String::new();
    s.push_str("| cartel 30%, many owners, at | audit rate | extra rate | known-answer check rate | replicas | bond ÷ price | wrong per 10,000 | replicas per verified task | honest profit per replica | cartel profit per replica | cartel loss per accepted wrong signature (× price) |\n");
    s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for o in outcomes {
        let p = &o.params;
        let cheat = cheater(o).map_or("–".into(), |g| per_replica(o, g));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.1} | {:.3} | {} | {} | {} |",
            o.scenario,
            p.audit_rate,
            p.extra_rate,
            p.canary_rate,
            p.replicas,
            p.min_bond / u128::from(p.price.max(1)),
            o.wrong_per_10k(),
            o.replicas_per_verified(),
            per_replica(o, o.honest()),
            cheat,
            loss_cell(o),
        );
    }
    s
}

/// One line for `starling demo`.
pub fn summary(o: &Outcome) -> String {
    let cheat = cheater(o).map_or(String::new(), |g| format!(", {} profit per replica {}", g.name, per_replica(o, g)));
    format!(
        "{}: {} workers, {} tasks verified, {:.1} wrong per 10,000, {:.2} replicas per task, honest profit per replica {}{}",
        o.scenario,
        o.params.workers,
        o.tasks_verified,
        o.wrong_per_10k(),
        o.replicas_per_verified(),
        per_replica(o, o.honest()),
        cheat
    )
}

/// An SVG chart of the sweep's audit rows: wrong results accepted per 10,000 tasks (left axis)
/// and replicas per verified task (right axis) against the audit rate.
pub fn chart(outcomes: &[Outcome]) -> String {
    let rows: Vec<&Outcome> =
        outcomes.iter().filter(|o| o.params.replicas == 2 && o.scenario.starts_with("audit")).collect();
    let canaries = rows.first().map_or(0.0, |o| o.params.canary_rate);
    let (w, h, left, right, top, bottom) = (640.0, 360.0, 70.0, 70.0, 40.0, 50.0);
    let max_x = rows.iter().map(|o| o.params.audit_rate).fold(0.0_f64, f64::max).max(0.01);
    let max_wrong = rows.iter().map(|o| o.wrong_per_10k()).fold(0.0_f64, f64::max).max(1.0);
    let max_rep = rows.iter().map(|o| o.replicas_per_verified()).fold(0.0_f64, f64::max).max(1.0) * 1.1;
    let x = |v: f64| left + v / max_x * (w - left - right);
    let y = |v: f64, max: f64| h - bottom - v / max * (h - top - bottom);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">Cartel of 30% (many owners): what audits buy (known-answer checks at {canaries})</text>"#,
        w / 2.0
    );
    let _ =
        writeln!(s, r#"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#, h - bottom, w - right, h - bottom);
    let _ = writeln!(s, r#"<line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="black"/>"#, h - bottom);
    let _ =
        writeln!(s, r#"<line x1="{}" y1="{top}" x2="{}" y2="{}" stroke="black"/>"#, w - right, w - right, h - bottom);
    for i in 0..=4 {
        let f = f64::from(i) / 4.0;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{:.2}</text>"#,
            x(f * max_x),
            h - bottom + 16.0,
            f * max_x
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end" fill="firebrick">{:.0}</text>"#,
            left - 6.0,
            y(f * max_wrong, max_wrong) + 4.0,
            f * max_wrong
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" fill="steelblue">{:.2}</text>"#,
            w - right + 6.0,
            y(f * max_rep, max_rep) + 4.0,
            f * max_rep
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">audit rate (hidden extra replicas alongside, see table)</text>"#,
        w / 2.0,
        h - 12.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" fill="firebrick" transform="rotate(-90 16 {})" text-anchor="middle">wrong results accepted per 10,000 tasks</text>"#,
        h / 2.0,
        h / 2.0
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" fill="steelblue" transform="rotate(90 {} {})" text-anchor="middle">replicas per verified task</text>"#,
        w - 16.0,
        h / 2.0,
        w - 16.0,
        h / 2.0
    );
    let line = |vals: Vec<(f64, f64)>, color: &str| {
        let points: Vec<String> = vals.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
        let mut l =
            format!(r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#, points.join(" "));
        for (a, b) in vals {
            let _ = write!(l, r#"<circle cx="{a:.1}" cy="{b:.1}" r="3" fill="{color}"/>"#);
        }
        l
    };
    let _ = writeln!(
        s,
        "{}",
        line(rows.iter().map(|o| (x(o.params.audit_rate), y(o.wrong_per_10k(), max_wrong))).collect(), "firebrick")
    );
    let _ = writeln!(
        s,
        "{}",
        line(
            rows.iter().map(|o| (x(o.params.audit_rate), y(o.replicas_per_verified(), max_rep))).collect(),
            "steelblue"
        )
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_population_leaves_an_honest_majority_and_the_sweep_varies_what_it_says() {
        let p = Params::default();
        for s in scenarios(&p).iter().chain(&sweep(&p)) {
            let share: f64 = s.groups.iter().map(|g| g.share).sum();
            assert!(share < 0.5, "{}", s.name);
        }
        let rates: Vec<f64> = sweep(&p).iter().map(|s| s.params.audit_rate).collect();
        assert!(rates.windows(2).take(5).all(|w| w[0] < w[1]), "{rates:?}");
    }
}
