//! The messages pose3d reads and writes in recordings, as serde structs in their ROS field order, encoded
//! and decoded by `cdr-encoding` (plain CDR as rmw_fastrtps writes it) behind the 4-byte encapsulation
//! header, so recordings are read, scored and written without a ROS installation. Where pose3d's view
//! of a message is smaller than the message (CameraInfo, PoseDistribution), a private wire struct
//! holds the whole message.

use anyhow::{bail, ensure, Context, Result};
use byteorder::{BigEndian, LittleEndian};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Encapsulation identifiers (the first two bytes of a serialized message).
const CDR_BE: [u8; 2] = [0, 0];
const CDR_LE: [u8; 2] = [0, 1];

/// Decodes a serialized message: the encapsulation header, then the payload (alignment is relative to
/// the payload start, as the encoder aligns it).
fn from_cdr<T: DeserializeOwned>(data: &[u8]) -> Result<T> {
    ensure!(data.len() >= 4, "message shorter than its CDR header");
    let payload = &data[4..];
    let value = match [data[0], data[1]] {
        CDR_LE => cdr_encoding::from_bytes::<T, LittleEndian>(payload),
        CDR_BE => cdr_encoding::from_bytes::<T, BigEndian>(payload),
        other => bail!(
            "only plain CDR (little-endian or big-endian) is supported, not encapsulation {:02x}{:02x}",
            other[0],
            other[1]
        ),
    };
    Ok(value.context("malformed CDR message")?.0)
}

/// Encodes a message as little-endian CDR with its encapsulation header.
fn to_cdr<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![CDR_LE[0], CDR_LE[1], 0, 0];
    // Serializing these plain structs into memory cannot fail.
    out.extend(cdr_encoding::to_vec::<T, LittleEndian>(value).expect("CDR encoding of a plain struct"));
    out
}

/// std_msgs/Header (builtin_interfaces/Time flattened: it has no padding of its own).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub sec: i32,
    pub nanosec: u32,
    pub frame_id: String,
}

impl Header {
    pub fn stamp_ns(&self) -> i64 {
        self.sec as i64 * 1_000_000_000 + self.nanosec as i64
    }
}

/// What pose3d needs of a sensor_msgs/CameraInfo.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CameraInfo {
    pub header: Header,
    pub height: u32,
    pub width: u32,
    pub distortion_model: String,
    pub d: Vec<f64>,
    pub k: [f64; 9],
}

#[derive(Serialize, Deserialize)]
struct RegionOfInterest {
    x_offset: u32,
    y_offset: u32,
    height: u32,
    width: u32,
    do_rectify: bool,
}

/// sensor_msgs/CameraInfo on the wire.
#[derive(Serialize, Deserialize)]
struct CameraInfoMsg {
    header: Header,
    height: u32,
    width: u32,
    distortion_model: String,
    d: Vec<f64>,
    k: [f64; 9],
    r: [f64; 9],
    p: [f64; 12],
    binning_x: u32,
    binning_y: u32,
    roi: RegionOfInterest,
}

impl CameraInfo {
    pub fn decode(data: &[u8]) -> Result<Self> {
        let m: CameraInfoMsg = from_cdr(data)?;
        Ok(CameraInfo {
            header: m.header,
            height: m.height,
            width: m.width,
            distortion_model: m.distortion_model,
            d: m.d,
            k: m.k,
        })
    }

    /// Written as a monocular camera: R identity, P = [K | 0], no binning, full-image ROI.
    pub fn encode(&self) -> Vec<u8> {
        let k = self.k;
        to_cdr(&CameraInfoMsg {
            header: self.header.clone(),
            height: self.height,
            width: self.width,
            distortion_model: self.distortion_model.clone(),
            d: self.d.clone(),
            k,
            r: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            p: [k[0], 0.0, k[2], 0.0, 0.0, k[4], k[5], 0.0, 0.0, 0.0, 1.0, 0.0],
            binning_x: 0,
            binning_y: 0,
            roi: RegionOfInterest { x_offset: 0, y_offset: 0, height: 0, width: 0, do_rectify: false },
        })
    }
}

/// pose3d_msgs/Skeleton2D.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Skeleton2D {
    pub id: String,
    pub layout: String,
    /// x, y (pixels), score: pose3d_msgs/Keypoint2D.
    pub keypoints: Vec<[f32; 3]>,
}

/// pose3d_msgs/Skeleton2DArray.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Skeleton2DArray {
    pub header: Header,
    pub skeletons: Vec<Skeleton2D>,
}

impl Skeleton2DArray {
    pub fn decode(data: &[u8]) -> Result<Self> {
        from_cdr(data)
    }
    pub fn encode(&self) -> Vec<u8> {
        to_cdr(self)
    }
}

/// pose3d_msgs/PoseDistribution, with the joints' means and covariances as two lists.
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

/// pose3d_msgs/JointDistribution on the wire (geometry_msgs/Point as three float64).
#[derive(Serialize, Deserialize)]
struct JointMsg {
    mean: [f64; 3],
    covariance: [f64; 9],
}

/// pose3d_msgs/PoseDistribution on the wire.
#[derive(Serialize, Deserialize)]
struct PoseDistributionMsg {
    id: String,
    layout: String,
    joints: Vec<JointMsg>,
    samples: Vec<[f64; 3]>,
    confidence: f32,
    num_samples: u32,
}

#[derive(Serialize, Deserialize)]
struct PoseDistributionArrayMsg {
    header: Header,
    poses: Vec<PoseDistributionMsg>,
}

/// pose3d_msgs/PoseDistributionArray.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoseDistributionArray {
    pub header: Header,
    pub poses: Vec<PoseDistribution>,
}

impl PoseDistributionArray {
    pub fn decode(data: &[u8]) -> Result<Self> {
        let m: PoseDistributionArrayMsg = from_cdr(data)?;
        let poses = m
            .poses
            .into_iter()
            .map(|p| PoseDistribution {
                id: p.id,
                layout: p.layout,
                means: p.joints.iter().map(|j| j.mean).collect(),
                covariances: p.joints.iter().map(|j| j.covariance).collect(),
                samples: p.samples,
                confidence: p.confidence,
                num_samples: p.num_samples,
            })
            .collect();
        Ok(PoseDistributionArray { header: m.header, poses })
    }

    pub fn encode(&self) -> Vec<u8> {
        let poses = self
            .poses
            .iter()
            .map(|p| PoseDistributionMsg {
                id: p.id.clone(),
                layout: p.layout.clone(),
                joints: p
                    .means
                    .iter()
                    .zip(&p.covariances)
                    .map(|(m, c)| JointMsg { mean: *m, covariance: *c })
                    .collect(),
                samples: p.samples.clone(),
                confidence: p.confidence,
                num_samples: p.num_samples,
            })
            .collect();
        to_cdr(&PoseDistributionArrayMsg { header: self.header.clone(), poses })
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

    #[test]
    fn big_endian_messages_decode() {
        let kp = Skeleton2DArray {
            header: Header { sec: 3, nanosec: 9, frame_id: "cam".into() },
            skeletons: vec![Skeleton2D {
                id: "b".into(),
                layout: "h36m17".into(),
                keypoints: vec![[3.0, 4.0, 1.0]; 17],
            }],
        };
        let mut be = vec![CDR_BE[0], CDR_BE[1], 0, 0];
        be.extend(cdr_encoding::to_vec::<_, BigEndian>(&kp).unwrap());
        assert_ne!(be[4..], kp.encode()[4..]);
        assert_eq!(Skeleton2DArray::decode(&be).unwrap(), kp);
    }
}
