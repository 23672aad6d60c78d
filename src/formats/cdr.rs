//! CDR (little-endian, XCDR1 as rmw_fastrtps writes it) encoding and decoding of the messages pose3d reads
//! and writes, so recordings can be read, scored and written without a ROS installation.

use anyhow::{bail, ensure, Result};

/// Reads a serialized ROS message: 4-byte encapsulation header, then the payload; alignment is relative
/// to the payload start.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Result<Self> {
        ensure!(data.len() >= 4, "message shorter than its CDR header");
        ensure!(
            data[0] == 0 && data[1] == 1,
            "only little-endian CDR is supported (header {:02x}{:02x})",
            data[0],
            data[1]
        );
        Ok(Reader { buf: &data[4..], pos: 0 })
    }
    fn align(&mut self, n: usize) {
        self.pos = self.pos.div_ceil(n) * n;
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        ensure!(self.pos + n <= self.buf.len(), "message truncated at byte {}", self.pos);
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Result<u32> {
        self.align(4);
        Ok(u32::from_le_bytes(self.take(4)?.try_into()?))
    }
    pub fn i32(&mut self) -> Result<i32> {
        Ok(self.u32()? as i32)
    }
    pub fn f32(&mut self) -> Result<f32> {
        Ok(f32::from_bits(self.u32()?))
    }
    pub fn f64(&mut self) -> Result<f64> {
        self.align(8);
        Ok(f64::from_le_bytes(self.take(8)?.try_into()?))
    }
    pub fn string(&mut self) -> Result<String> {
        let n = self.u32()? as usize;
        if n == 0 {
            return Ok(String::new());
        }
        let b = self.take(n)?;
        Ok(String::from_utf8_lossy(&b[..n - 1]).into_owned())
    }
    /// A sequence length, checked against what is left so corrupt data cannot ask for huge allocations.
    pub fn len(&mut self, min_elem: usize) -> Result<usize> {
        let n = self.u32()? as usize;
        ensure!(
            n.saturating_mul(min_elem.max(1)) <= self.buf.len() - self.pos.min(self.buf.len()),
            "sequence of {n} elements exceeds the message"
        );
        Ok(n)
    }
}

#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Writer { buf: Vec::new() }
    }
    fn align(&mut self, n: usize) {
        while !self.buf.len().is_multiple_of(n) {
            self.buf.push(0);
        }
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.align(4);
        self.buf.extend(v.to_le_bytes());
    }
    pub fn i32(&mut self, v: i32) {
        self.u32(v as u32);
    }
    pub fn f32(&mut self, v: f32) {
        self.u32(v.to_bits());
    }
    pub fn f64(&mut self, v: f64) {
        self.align(8);
        self.buf.extend(v.to_le_bytes());
    }
    pub fn string(&mut self, s: &str) {
        self.u32(s.len() as u32 + 1);
        self.buf.extend(s.as_bytes());
        self.buf.push(0);
    }
    pub fn finish(self) -> Vec<u8> {
        let mut out = vec![0u8, 1, 0, 0];
        out.extend(self.buf);
        out
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Header {
    pub sec: i32,
    pub nanosec: u32,
    pub frame_id: String,
}

impl Header {
    pub fn stamp_ns(&self) -> i64 {
        self.sec as i64 * 1_000_000_000 + self.nanosec as i64
    }
    fn read(r: &mut Reader) -> Result<Self> {
        Ok(Header { sec: r.i32()?, nanosec: r.u32()?, frame_id: r.string()? })
    }
    fn write(&self, w: &mut Writer) {
        w.i32(self.sec);
        w.u32(self.nanosec);
        w.string(&self.frame_id);
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CameraInfo {
    pub header: Header,
    pub height: u32,
    pub width: u32,
    pub distortion_model: String,
    pub d: Vec<f64>,
    pub k: [f64; 9],
}

impl CameraInfo {
    pub fn decode(data: &[u8]) -> Result<Self> {
        let mut r = Reader::new(data)?;
        let header = Header::read(&mut r)?;
        let height = r.u32()?;
        let width = r.u32()?;
        let distortion_model = r.string()?;
        let n = r.len(8)?;
        let d = (0..n).map(|_| r.f64()).collect::<Result<_>>()?;
        let mut k = [0.0; 9];
        for v in k.iter_mut() {
            *v = r.f64()?;
        }
        Ok(CameraInfo { header, height, width, distortion_model, d, k })
    }
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.header.write(&mut w);
        w.u32(self.height);
        w.u32(self.width);
        w.string(&self.distortion_model);
        w.u32(self.d.len() as u32);
        for v in &self.d {
            w.f64(*v);
        }
        for v in &self.k {
            w.f64(*v);
        }
        for v in [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0] {
            w.f64(v);
        }
        let p = [self.k[0], 0.0, self.k[2], 0.0, 0.0, self.k[4], self.k[5], 0.0, 0.0, 0.0, 1.0, 0.0];
        for v in p {
            w.f64(v);
        }
        w.u32(0);
        w.u32(0);
        for _ in 0..4 {
            w.u32(0);
        }
        w.u8(0);
        w.finish()
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Skeleton2D {
    pub id: String,
    pub layout: String,
    /// x, y (pixels), score.
    pub keypoints: Vec<[f32; 3]>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Skeleton2DArray {
    pub header: Header,
    pub skeletons: Vec<Skeleton2D>,
}

impl Skeleton2DArray {
    pub fn decode(data: &[u8]) -> Result<Self> {
        let mut r = Reader::new(data)?;
        let header = Header::read(&mut r)?;
        let n = r.len(12)?;
        let mut skeletons = Vec::with_capacity(n);
        for _ in 0..n {
            let id = r.string()?;
            let layout = r.string()?;
            let m = r.len(12)?;
            let keypoints = (0..m).map(|_| Ok([r.f32()?, r.f32()?, r.f32()?])).collect::<Result<_>>()?;
            skeletons.push(Skeleton2D { id, layout, keypoints });
        }
        Ok(Skeleton2DArray { header, skeletons })
    }
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.header.write(&mut w);
        w.u32(self.skeletons.len() as u32);
        for s in &self.skeletons {
            w.string(&s.id);
            w.string(&s.layout);
            w.u32(s.keypoints.len() as u32);
            for k in &s.keypoints {
                w.f32(k[0]);
                w.f32(k[1]);
                w.f32(k[2]);
            }
        }
        w.finish()
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoseDistribution {
    pub id: String,
    pub layout: String,
    pub means: Vec<[f64; 3]>,
    pub covariances: Vec<[f64; 9]>,
    pub samples: Vec<[f64; 3]>,
    pub confidence: f32,
    pub num_samples: u32,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoseDistributionArray {
    pub header: Header,
    pub poses: Vec<PoseDistribution>,
}

impl PoseDistributionArray {
    pub fn decode(data: &[u8]) -> Result<Self> {
        let mut r = Reader::new(data)?;
        let header = Header::read(&mut r)?;
        let n = r.len(16)?;
        let mut poses = Vec::with_capacity(n);
        for _ in 0..n {
            let id = r.string()?;
            let layout = r.string()?;
            let nj = r.len(96)?;
            let (mut means, mut covariances) = (Vec::with_capacity(nj), Vec::with_capacity(nj));
            for _ in 0..nj {
                means.push([r.f64()?, r.f64()?, r.f64()?]);
                let mut c = [0.0; 9];
                for v in c.iter_mut() {
                    *v = r.f64()?;
                }
                covariances.push(c);
            }
            let ns = r.len(24)?;
            let samples = (0..ns).map(|_| Ok([r.f64()?, r.f64()?, r.f64()?])).collect::<Result<_>>()?;
            let confidence = r.f32()?;
            let num_samples = r.u32()?;
            poses.push(PoseDistribution { id, layout, means, covariances, samples, confidence, num_samples });
        }
        Ok(PoseDistributionArray { header, poses })
    }
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.header.write(&mut w);
        w.u32(self.poses.len() as u32);
        for p in &self.poses {
            w.string(&p.id);
            w.string(&p.layout);
            w.u32(p.means.len() as u32);
            for (m, c) in p.means.iter().zip(&p.covariances) {
                for v in m.iter().chain(c.iter()) {
                    w.f64(*v);
                }
            }
            w.u32(p.samples.len() as u32);
            for s in &p.samples {
                for v in s {
                    w.f64(*v);
                }
            }
            w.f32(p.confidence);
            w.u32(p.num_samples);
        }
        w.finish()
    }
}

/// Decoded messages of the types pose3d replays and scores.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    CameraInfo(CameraInfo),
    Keypoints(Skeleton2DArray),
    Poses(PoseDistributionArray),
}

pub fn decode(msg_type: &str, data: &[u8]) -> Result<Decoded> {
    Ok(match msg_type {
        "sensor_msgs/msg/CameraInfo" => Decoded::CameraInfo(CameraInfo::decode(data)?),
        "pose3d_msgs/msg/Skeleton2DArray" => Decoded::Keypoints(Skeleton2DArray::decode(data)?),
        "pose3d_msgs/msg/PoseDistributionArray" => Decoded::Poses(PoseDistributionArray::decode(data)?),
        other => bail!("no decoder for message type {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let h = Header { sec: 17, nanosec: 5, frame_id: "cam".into() };
        let ci = CameraInfo {
            header: h.clone(),
            height: 480,
            width: 640,
            distortion_model: "plumb_bob".into(),
            d: vec![0.1, 0.2, 0.0, 0.0, 0.01],
            k: [500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0],
        };
        assert_eq!(CameraInfo::decode(&ci.encode()).unwrap(), ci);
        let kp = Skeleton2DArray {
            header: h.clone(),
            skeletons: vec![Skeleton2D {
                id: "a".into(),
                layout: "coco17".into(),
                keypoints: vec![[1.0, 2.0, 0.5]; 17],
            }],
        };
        assert_eq!(Skeleton2DArray::decode(&kp.encode()).unwrap(), kp);
        let p = PoseDistributionArray {
            header: h,
            poses: vec![PoseDistribution {
                id: "x".into(),
                layout: "h36m17".into(),
                means: vec![[1.0, 2.0, 3.0]; 17],
                covariances: vec![[0.5; 9]; 17],
                samples: vec![[4.0, 5.0, 6.0]; 34],
                confidence: 0.7,
                num_samples: 2,
            }],
        };
        assert_eq!(PoseDistributionArray::decode(&p.encode()).unwrap(), p);
    }

    #[test]
    fn corrupt_data_is_an_error() {
        let kp = Skeleton2DArray {
            header: Header::default(),
            skeletons: vec![Skeleton2D {
                id: "a".into(),
                layout: "coco17".into(),
                keypoints: vec![[1.0, 2.0, 0.5]; 17],
            }],
        };
        let b = kp.encode();
        assert!(Skeleton2DArray::decode(&b[..b.len() - 5]).is_err());
        let mut huge = b.clone();
        // The skeleton count: after the 4-byte CDR header, stamp (8), frame_id (4 + 1, padded to 16).
        huge[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Skeleton2DArray::decode(&huge).is_err());
        assert!(Skeleton2DArray::decode(&[1, 0, 0, 0]).unwrap_err().to_string().contains("little-endian"));
    }
}
