//! `gateway check [FILE]`: validates a configuration offline (errors carry `file:line:col`).

use super::config_path;
use gateway::{auth, config::Config};

/// Runs the command; exits with 1 when the file is refused.
pub fn run(rest: &[String]) -> anyhow::Result<()> {
    let path = config_path(rest.first().map(String::as_str));
    match Config::load(&path)
        .map_err(anyhow::Error::from)
        .and_then(|c| {
            auth::Authenticator::new(&c)?;
            Ok(c)
        }) {
        Ok(c) => {
            println!(
                "{}: ok ({} plugins, {} routes, {} listeners)",
                path.display(),
                c.plugins.len(),
                c.routes.len(),
                c.server.listen.len()
            );
            Ok(())
        }
        Err(e) => {
            eprintln!("{e:#}");
            std::process::exit(1)
        }
    }
}
