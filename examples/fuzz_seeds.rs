//! Writes the built-in seed inputs into `fuzz/corpus/<target>/seed`, where
//! the fuzz targets start from them (`fuzz/run.sh` runs this first).

fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (name, bytes) in traft::fuzz::seeds() {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("seed"), bytes)?;
        println!("{}/seed", dir.display());
    }
    Ok(())
}
