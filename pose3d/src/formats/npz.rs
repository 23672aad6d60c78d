//! NumPy `.npz` archives of float32 arrays (the dataset's poses and detections, the evaluator's
//! predictions), read and written through `ndarray-npy`; this module only maps them to plain
//! shape + row-major data.

use anyhow::{Context, Result};
use ndarray::{ArrayD, IxDyn};
use ndarray_npy::{NpzReader, NpzWriter};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    /// Row-major (C order).
    pub data: Vec<f32>,
}

/// Reads every member of an npz archive; keys lose their `.npy` suffix.
pub fn read(path: &Path) -> Result<BTreeMap<String, Array>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut z = NpzReader::new(f).with_context(|| format!("{} is not an npz (zip) archive", path.display()))?;
    let mut out = BTreeMap::new();
    for name in z.names().with_context(|| format!("listing {}", path.display()))? {
        let a: ArrayD<f32> = z
            .by_name(&name)
            .with_context(|| format!("{name} in {}: only float32 arrays are supported", path.display()))?;
        // iter() walks in logical (row-major) order whatever the stored order.
        let array = Array { shape: a.shape().to_vec(), data: a.iter().copied().collect() };
        out.insert(name.trim_end_matches(".npy").to_string(), array);
    }
    Ok(out)
}

/// Writes arrays as an (uncompressed) npz that `numpy.load` reads.
pub fn write(path: &Path, arrays: &BTreeMap<String, Array>) -> Result<()> {
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut z = NpzWriter::new(f);
    for (k, a) in arrays {
        let nd = ArrayD::from_shape_vec(IxDyn(&a.shape), a.data.clone())
            .with_context(|| format!("{k}: shape {:?} does not hold {} values", a.shape, a.data.len()))?;
        z.add_array(k.as_str(), &nd).with_context(|| format!("writing {k} to {}", path.display()))?;
    }
    z.finish().with_context(|| format!("finishing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = std::env::temp_dir().join(format!("pose3d-npz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.npz");
        let mut m = BTreeMap::new();
        m.insert(
            "S1/Walk 1/54138969".to_string(),
            Array { shape: vec![2, 3], data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5] },
        );
        m.insert("v".to_string(), Array { shape: vec![1], data: vec![7.0] });
        write(&p, &m).unwrap();
        assert_eq!(read(&p).unwrap(), m);
        std::fs::write(dir.join("bad.npz"), b"nope").unwrap();
        assert!(read(&dir.join("bad.npz")).unwrap_err().to_string().contains("not an npz"));
    }
}
