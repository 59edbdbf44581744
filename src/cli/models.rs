//! `mdx-stems models`: the built-ins and the models found; `--available` and `--download`.

use super::ModelsArgs;
use crate::download::{self, AVAILABLE, DownloadOptions};
use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

pub fn run(args: &ModelsArgs) -> Result<()> {
    if args.available {
        print!("{}", download::print_available(AVAILABLE));
        return Ok(());
    }
    if let Some(name) = &args.download {
        let model = download::find(AVAILABLE, name)?;
        let opts = DownloadOptions::from_env();
        let bar = if args.quiet || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} (eta {eta})")
                    .expect("static template")
                    .progress_chars("=> "),
            );
            b.set_message(model.name);
            b
        };
        let path = download::download(model, &opts, &mut |done, total| {
            if let Some(t) = total {
                bar.set_length(t);
            }
            bar.set_position(done);
        })?;
        bar.finish_and_clear();
        if !args.quiet {
            eprintln!("downloaded and verified {}", path.display());
        }
        return Ok(());
    }
    print!("{}", crate::catalog::print_models_table(&crate::catalog::discover()));
    Ok(())
}
