// embed_migrations! reads the migrations directory at compile time; without
// this, adding a new migration would not trigger a rebuild.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
