//! `starling simulate`: the market simulator (`starling_relay::sim`) over every population and
//! a parameter sweep, written into BENCHMARKS.md and a chart.

use anyhow::{Context, Result, bail};
use starling_relay::sim::{self, Outcome, Params, report};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Workers in each run.
    #[arg(long, default_value_t = Params::default().workers)]
    workers: usize,
    /// Tasks in each run.
    #[arg(long, default_value_t = Params::default().tasks)]
    tasks: usize,
    /// Seed of every draw: the same seed gives the same numbers.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run only the populations whose name contains this.
    #[arg(long)]
    only: Option<String>,
    /// Skip the parameter sweep.
    #[arg(long)]
    no_sweep: bool,
    /// Write the tables into this file between `<!-- simulator:begin -->` and
    /// `<!-- simulator:end -->`, and the chart beside it as `docs/simulator.svg`.
    #[arg(long)]
    write: Option<PathBuf>,
    /// The escrow contract's wasm (default: target/contracts/starling_escrow.wasm).
    #[arg(long)]
    contract: Option<PathBuf>,
}

fn run_all(scenarios: Vec<sim::Scenario>, wasm: &[u8]) -> Result<Vec<Outcome>> {
    let mut out = Vec::new();
    for s in scenarios {
        let started = Instant::now();
        let o = sim::run(&s, wasm).with_context(|| format!("simulating {}", s.name))?;
        eprintln!("{} ({:.1} s)", report::summary(&o), started.elapsed().as_secs_f64());
        out.push(o);
    }
    Ok(out)
}

pub fn run(args: SimulateArgs) -> Result<()> {
    let contract = args
        .contract
        .clone()
        .or_else(|| crate::locate(&["target/contracts/starling_escrow.wasm"]))
        .context("no escrow contract found; build it with scripts/build-contract.sh or pass --contract")?;
    let wasm = std::fs::read(&contract).with_context(|| format!("reading {}", contract.display()))?;
    let params = Params { workers: args.workers, tasks: args.tasks, seed: args.seed, ..Params::default() };
    let keep = |s: &sim::Scenario| args.only.as_deref().is_none_or(|o| s.name.contains(o));
    let started = Instant::now();
    let main = run_all(report::scenarios(&params).into_iter().filter(keep).collect(), &wasm)?;
    let sweep = if args.no_sweep { Vec::new() } else { run_all(report::sweep(&params), &wasm)? };
    let elapsed = started.elapsed().as_secs_f64();
    let tables = format!("{}\n{}", report::table(&main), report::sweep_table(&sweep));
    println!("{tables}");
    if let Some(path) = &args.write {
        write(path, &params, &tables, elapsed)?;
        let chart = path.parent().unwrap_or(Path::new(".")).join("docs/simulator.svg");
        std::fs::write(&chart, report::chart(&sweep)).with_context(|| format!("writing {}", chart.display()))?;
        eprintln!("wrote {} and {}", path.display(), chart.display());
    }
    Ok(())
}

fn write(path: &Path, p: &Params, tables: &str, elapsed: f64) -> Result<()> {
    let (begin, end) = ("<!-- simulator:begin -->", "<!-- simulator:end -->");
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let (Some(b), Some(e)) = (text.find(begin), text.find(end)) else {
        bail!("{} has no {begin} … {end} section", path.display());
    };
    let (date, machine) = (starling_escrow_vm::record::utc_date(), starling_escrow_vm::record::machine());
    let section = format!(
        "{begin}\n_Measured {date} on {machine}: `starling simulate --workers {} --tasks {} --seed {} --write BENCHMARKS.md`, {elapsed:.0} s in all. \
         Each run: {} workers, {} tasks in jobs of {}, {} replicas (quorum {}, at most {}), price {} per replica, bond {} ({}× the price), slash {}% of the bond, \
         honest work costing {}% of the price, audit rate {}, hidden extra replica rate {}, known-answer check rate {}._\n\n{tables}\n![the sweep](docs/simulator.svg)\n{end}",
        p.workers,
        p.tasks,
        p.seed,
        p.workers,
        p.tasks,
        p.tasks_per_job,
        p.replicas,
        p.replicas,
        p.max_replicas,
        p.price,
        p.min_bond,
        p.min_bond / u128::from(p.price),
        p.slash_bps / 100,
        p.compute_cost * 100.0,
        p.audit_rate,
        p.extra_rate,
        p.canary_rate,
    );
    let out = format!("{}{section}{}", &text[..b], &text[e + end.len()..]);
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}
