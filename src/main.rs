//! `mdx-stems` command-line entry point.
use clap::Parser;
use mdx_stems::cli::{Cli, Command};
use mdx_stems::options::EngineOptions;

fn main() {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Separate(a) => mdx_stems::cli::separate::run(a, EngineOptions::from_env()),
        Command::Info(a) => mdx_stems::cli::info::run(a),
        Command::Models(a) => mdx_stems::cli::models::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {}", mdx_stems::cli::error_text(&e));
        std::process::exit(1);
    }
}
