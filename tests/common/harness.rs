//! A small test runner for the test binaries that need set-up and
//! tear-down around the whole run (a fresh PostgreSQL database that must
//! be dropped at the end), which libtest cannot give.
//!
//! It understands what `cargo test` passes on: name filters, `--skip`,
//! `--exact`, `--list`, and ignores the rest. Tests run as tasks on one
//! runtime, at most `parallel` at a time; a panicking test fails alone.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pg::PgFixture;

pub type TestFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

pub struct Test {
    pub name: String,
    pub run: Box<dyn FnOnce() -> TestFuture + Send>,
}

/// A test named `name` running `f`.
pub fn test<F, Fut>(name: impl Into<String>, f: F) -> Test
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Test {
        name: name.into(),
        run: Box::new(move || Box::pin(f())),
    }
}

#[derive(Debug, Default)]
pub struct Args {
    filters: Vec<String>,
    skip: Vec<String>,
    exact: bool,
    pub list: bool,
    ignored: bool,
}

impl Args {
    pub fn from_env() -> Args {
        let mut args = Args::default();
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            match a.as_str() {
                "--exact" => args.exact = true,
                "--list" => args.list = true,
                "--ignored" => args.ignored = true,
                "--skip" => args.skip.extend(it.next()),
                "--test-threads" | "--format" | "--color" | "--logfile" | "-Z" => {
                    it.next();
                }
                s if s.starts_with('-') => {}
                s => args.filters.push(s.to_owned()),
            }
        }
        args
    }

    /// Whether any selected test's name contains `part`.
    pub fn selects_any(&self, tests: &[Test], part: &str) -> bool {
        tests
            .iter()
            .any(|t| t.name.contains(part) && self.selects(&t.name))
    }

    fn selects(&self, name: &str) -> bool {
        if self.ignored {
            return false;
        }
        let matches = |f: &String| {
            if self.exact {
                name == f
            } else {
                name.contains(f.as_str())
            }
        };
        (self.filters.is_empty() || self.filters.iter().any(matches))
            && !self.skip.iter().any(|s| name.contains(s.as_str()))
    }
}

/// The `main` of a test binary on a fresh PostgreSQL database: creates
/// `eva_test_<tag>_…` when a selected test's name contains `needs_pg`
/// (any selected test, if it is empty), runs the tests `parallel` at a
/// time, each within `timeout`, and drops the database.
pub fn main_on_postgres(
    tag: &str,
    needs_pg: &str,
    parallel: usize,
    timeout: Duration,
    tests: fn(Option<PgFixture>) -> Vec<Test>,
) -> ExitCode {
    let args = Args::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ok = runtime.block_on(async {
        let pg = if !args.list && args.selects_any(&tests(None), needs_pg) {
            Some(PgFixture::create(tag).await)
        } else {
            None
        };
        let ok = run(tests(pg.clone()), &args, parallel, timeout).await;
        if let Some(pg) = pg {
            pg.drop_database().await;
        }
        ok
    });
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs the selected tests, each within `timeout`; returns whether all
/// passed.
pub async fn run(tests: Vec<Test>, args: &Args, parallel: usize, timeout: Duration) -> bool {
    if args.list {
        for t in &tests {
            println!("{}: test", t.name);
        }
        return true;
    }
    let total = tests.len();
    let selected: Vec<Test> = tests
        .into_iter()
        .filter(|t| args.selects(&t.name))
        .collect();
    let filtered = total - selected.len();
    println!("\nrunning {} tests", selected.len());
    let started = Instant::now();
    let permits = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut handles = Vec::new();
    for t in selected {
        let permits = permits.clone();
        let name = t.name.clone();
        let handle = tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore open");
            let began = Instant::now();
            let outcome = tokio::time::timeout(timeout, tokio::spawn((t.run)())).await;
            let result = match outcome {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) if e.is_panic() => Err(panic_message(e.into_panic())),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("timed out after {timeout:?}")),
            };
            match &result {
                Ok(()) => println!(
                    "test {} ... ok ({:.1} s)",
                    t.name,
                    began.elapsed().as_secs_f64()
                ),
                Err(_) => println!("test {} ... FAILED", t.name),
            }
            result
        });
        handles.push((name, handle));
    }
    let mut failures = Vec::new();
    for (name, h) in handles {
        match h.await {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => failures.push((name, msg)),
            Err(e) => failures.push((name, e.to_string())),
        }
    }
    if !failures.is_empty() {
        println!("\nfailures:");
        for (name, msg) in &failures {
            println!("    {name}: {msg}");
        }
    }
    let ran = total - filtered;
    let failed = failures.len();
    println!(
        "\ntest result: {}. {} passed; {} failed; 0 ignored; 0 measured; {} filtered out; \
         finished in {:.2}s\n",
        if failed == 0 { "ok" } else { "FAILED" },
        ran - failed,
        failed,
        filtered,
        started.elapsed().as_secs_f64()
    );
    failed == 0
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panicked".to_owned()
    }
}
