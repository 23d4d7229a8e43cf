// Migrations are embedded with `sqlx::migrate!`, and the console's bundle
// with rust-embed (src/gateway/pages.rs); rebuild when either changes.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=console/dist");
}
