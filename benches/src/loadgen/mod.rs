//! The `load` tool: connection storm, throughput, sustained load, fan-out and
//! idle-memory scenarios against the gateway (chat protocol) or the bare server.

pub mod cli;
pub mod open;
pub mod pace;
pub mod payload;
pub mod progress;
pub mod report;
pub mod scenarios;
pub mod session;
pub mod sys;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;

use crate::target::Target;
use cli::{Args, Mode, Test};
use open::Opener;
use report::Report;

/// Everything a scenario needs.
pub struct Ctx {
    /// Parsed options.
    pub args: Args,
    /// Opens connections.
    pub opener: Arc<Opener>,
    /// No phase may run past this instant.
    pub deadline: Instant,
}

impl Ctx {
    /// True once the global deadline has passed.
    pub fn timed_out(&self) -> bool {
        Instant::now() >= self.deadline
    }
}

/// Runs the scenario selected by `args` and returns its report.
pub async fn run(args: Args) -> anyhow::Result<Report> {
    let target = Target::parse(&args.url)?;
    let target = if args.mode == Mode::Ably {
        target.with_ably_key()?
    } else {
        target
    };
    let minter = match args.mode {
        Mode::Bare | Mode::Ably => None,
        Mode::Chat => {
            let secret = args
                .secret
                .clone()
                .context("chat mode needs a JWT secret: pass --secret or set GATEWAY_JWT_SECRET")?;
            Some(Arc::new(token::Minter::new(&secret)))
        }
    };
    let parse = |url: &str| -> anyhow::Result<Target> {
        let t = Target::parse(url)?;
        if args.mode == Mode::Ably {
            t.with_ably_key()
        } else {
            Ok(t)
        }
    };
    let second = args.url2.as_deref().map(parse).transpose()?;
    let publisher = args.publisher_url.as_deref().map(parse).transpose()?;
    let opener = Arc::new(
        Opener::new(target, args.mode, minter, args.users).with_targets(second, publisher),
    );
    let deadline = Instant::now() + Duration::from_secs_f64(args.timeout);
    let ctx = Ctx {
        args,
        opener,
        deadline,
    };
    match ctx.args.test {
        Test::Storm => scenarios::storm::run(&ctx).await,
        Test::Throughput => scenarios::throughput::run(&ctx).await,
        Test::Sustained => scenarios::sustained::run(&ctx).await,
        Test::Fanout => scenarios::fanout::run(&ctx).await,
        Test::Idle => scenarios::idle::run(&ctx).await,
    }
}
