//! NumPy `.npz` archives of little-endian float32 arrays: reading (stored or deflated members) and writing.

use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

fn parse_npy(bytes: &[u8], name: &str) -> Result<Array> {
    ensure!(bytes.len() >= 10 && &bytes[..6] == b"\x93NUMPY", "{name}: not an .npy member");
    let major = bytes[6];
    let (hlen, off) = if major == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        ensure!(bytes.len() >= 12, "{name}: truncated header");
        (u32::from_le_bytes(bytes[8..12].try_into()?) as usize, 12)
    };
    ensure!(bytes.len() >= off + hlen, "{name}: truncated header");
    let header = std::str::from_utf8(&bytes[off..off + hlen])?;
    if !header.contains("'descr': '<f4'") {
        bail!("{name}: only little-endian float32 arrays are supported (header {header})");
    }
    ensure!(header.contains("'fortran_order': False"), "{name}: Fortran-ordered arrays are not supported");
    let s = header.split("'shape': (").nth(1).and_then(|r| r.split(')').next()).context("no shape in header")?;
    let shape: Vec<usize> =
        s.split(',').map(str::trim).filter(|t| !t.is_empty()).map(|t| t.parse()).collect::<Result<_, _>>()?;
    let n: usize = shape.iter().product();
    let body = &bytes[off + hlen..];
    ensure!(body.len() == 4 * n, "{name}: {} bytes of data for shape {shape:?}", body.len());
    let data = body.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    Ok(Array { shape, data })
}

/// Reads every member of an npz archive; keys lose their `.npy` suffix.
pub fn read(path: &Path) -> Result<BTreeMap<String, Array>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut z = zip::ZipArchive::new(f).with_context(|| format!("{} is not an npz (zip) archive", path.display()))?;
    let mut out = BTreeMap::new();
    for i in 0..z.len() {
        let mut m = z.by_index(i)?;
        let name = m.name().trim_end_matches(".npy").to_string();
        let mut buf = Vec::with_capacity(m.size() as usize);
        m.read_to_end(&mut buf)?;
        let a = parse_npy(&buf, &name).with_context(|| format!("in {}", path.display()))?;
        out.insert(name, a);
    }
    Ok(out)
}

/// Writes arrays as an (uncompressed) npz that `numpy.load` reads.
pub fn write(path: &Path, arrays: &BTreeMap<String, Array>) -> Result<()> {
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut z = zip::ZipWriter::new(f);
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored).large_file(true);
    for (k, a) in arrays {
        ensure!(
            a.shape.iter().product::<usize>() == a.data.len(),
            "{k}: shape {:?} does not hold {} values",
            a.shape,
            a.data.len()
        );
        let shape = match a.shape.len() {
            1 => format!("({},)", a.shape[0]),
            _ => format!("({})", a.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
        };
        let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        z.start_file(format!("{k}.npy"), opts)?;
        z.write_all(b"\x93NUMPY\x01\x00")?;
        z.write_all(&(header.len() as u16).to_le_bytes())?;
        z.write_all(header.as_bytes())?;
        let raw: Vec<u8> = a.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        z.write_all(&raw)?;
    }
    z.finish()?;
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
