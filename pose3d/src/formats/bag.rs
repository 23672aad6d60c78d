//! rosbag2 recordings: reading MCAP and sqlite3 storage (as `ros2 bag record` writes them) and writing
//! MCAP bags (with the metadata.yaml that `ros2 bag play` wants).

use crate::formats::msgdef;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub topic: String,
    pub msg_type: String,
    /// Receive time, nanoseconds.
    pub log_time: u64,
    /// Serialized message (CDR with its 4-byte header).
    pub data: Vec<u8>,
}

/// The storage files of a bag: a directory (rosbag2 layout) or a single .mcap / .db3 file.
fn storage_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("reading bag directory {}", path.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("mcap") | Some("db3")))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{} holds no .mcap or .db3 storage file", path.display());
    }
    Ok(files)
}

/// Reads every message of a bag, in log-time order.
pub fn read(path: &Path) -> Result<Vec<Recorded>> {
    let mut out = Vec::new();
    for f in storage_files(path)? {
        match f.extension().and_then(|e| e.to_str()) {
            Some("mcap") => read_mcap(&f, &mut out)?,
            Some("db3") => read_sqlite(&f, &mut out)?,
            _ => bail!("unsupported storage file {}", f.display()),
        }
    }
    out.sort_by_key(|m| m.log_time);
    Ok(out)
}

fn read_mcap(path: &Path, out: &mut Vec<Recorded>) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    for m in mcap::MessageStream::new(&bytes).with_context(|| format!("{} is not an MCAP file", path.display()))? {
        let m = m.with_context(|| format!("reading {}", path.display()))?;
        let msg_type = m.channel.schema.as_ref().map(|s| s.name.clone()).unwrap_or_default();
        out.push(Recorded {
            topic: m.channel.topic.clone(),
            msg_type,
            log_time: m.log_time,
            data: m.data.into_owned(),
        });
    }
    Ok(())
}

fn read_sqlite(path: &Path, out: &mut Vec<Recorded>) -> Result<()> {
    let db = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut topics = BTreeMap::new();
    let mut q = db
        .prepare("SELECT id, name, type FROM topics")
        .with_context(|| format!("{} is not a rosbag2 sqlite3 file", path.display()))?;
    let rows = q.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
    for r in rows {
        let (id, name, ty) = r?;
        topics.insert(id, (name, ty));
    }
    let mut q = db.prepare("SELECT topic_id, timestamp, data FROM messages ORDER BY timestamp")?;
    let rows = q.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, Vec<u8>>(2)?)))?;
    for r in rows {
        let (tid, t, data) = r?;
        let Some((topic, ty)) = topics.get(&tid) else {
            bail!("message of unknown topic id {tid} in {}", path.display())
        };
        out.push(Recorded { topic: topic.clone(), msg_type: ty.clone(), log_time: t as u64, data });
    }
    Ok(())
}

/// Writes messages as a rosbag2 directory with one MCAP file and metadata.yaml, as Jazzy's `ros2 bag record`
/// does: complete message definitions as schemas, each channel's offered QoS and type hash, metadata
/// version 9.
pub fn write_mcap(dir: &Path, messages: &[Recorded]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = format!("{}.mcap", dir.file_name().unwrap_or_default().to_string_lossy());
    let file = std::fs::File::create(dir.join(&name))?;
    let mut w = mcap::WriteOptions::new().profile("ros2").create(std::io::BufWriter::new(file))?;
    let mut channels: BTreeMap<String, (u16, String, usize)> = BTreeMap::new();
    let (mut t_min, mut t_max) = (u64::MAX, 0u64);
    let qos = serde_yaml::to_string(&[default_qos()])?;
    for (seq, m) in messages.iter().enumerate() {
        if !channels.contains_key(&m.topic) {
            let definition = msgdef::full_definition(&m.msg_type)
                .with_context(|| format!("no message definition compiled in for {}", m.msg_type))?;
            let schema = w.add_schema(&m.msg_type, "ros2msg", definition.as_bytes())?;
            let metadata = BTreeMap::from([
                ("offered_qos_profiles".to_string(), qos.clone()),
                ("topic_type_hash".to_string(), msgdef::type_hash(&m.msg_type).unwrap_or_default().to_string()),
            ]);
            let ch = w.add_channel(schema, &m.topic, "cdr", &metadata)?;
            channels.insert(m.topic.clone(), (ch, m.msg_type.clone(), 0));
        }
        let entry = channels.get_mut(&m.topic).unwrap();
        entry.2 += 1;
        w.write_to_known_channel(
            &mcap::records::MessageHeader {
                channel_id: entry.0,
                sequence: seq as u32,
                log_time: m.log_time,
                publish_time: m.log_time,
            },
            &m.data,
        )?;
        t_min = t_min.min(m.log_time);
        t_max = t_max.max(m.log_time);
    }
    w.finish()?;
    let t_min = t_min.min(t_max);
    let duration = serde_yaml::Mapping::from_iter([("nanoseconds".into(), (t_max - t_min).into())]);
    let start = serde_yaml::Mapping::from_iter([("nanoseconds_since_epoch".into(), t_min.into())]);
    let topics: Vec<serde_yaml::Value> = channels
        .iter()
        .map(|(topic, (_, ty, n))| {
            serde_yaml::to_value(serde_json::json!({
                "topic_metadata": {
                    "name": topic,
                    "type": ty,
                    "serialization_format": "cdr",
                    "offered_qos_profiles": [default_qos()],
                    "type_description_hash": msgdef::type_hash(ty).unwrap_or_default(),
                },
                "message_count": n,
            }))
        })
        .collect::<Result<_, _>>()?;
    let info = serde_json::json!({
        "version": 9,
        "storage_identifier": "mcap",
        "duration": duration,
        "starting_time": start,
        "message_count": messages.len(),
        "topics_with_message_count": topics,
        "compression_format": "",
        "compression_mode": "",
        "relative_file_paths": [name],
        "files": [{"path": name, "starting_time": start, "duration": duration, "message_count": messages.len()}],
        "custom_data": null,
        "ros_distro": "jazzy",
    });
    let meta = serde_yaml::to_string(&serde_json::json!({ "rosbag2_bagfile_information": info }))?;
    std::fs::write(dir.join("metadata.yaml"), meta)?;
    Ok(())
}

/// The QoS a default ROS 2 publisher offers (reliable, volatile, keep last 10, no deadline, lifespan or
/// lease: rosbag2 writes "infinite" as the largest duration), in the metadata version 9 spelling.
fn default_qos() -> serde_json::Value {
    let infinite = serde_json::json!({"sec": 9_223_372_036u64, "nsec": 854_775_807u64});
    serde_json::json!({
        "history": "keep_last",
        "depth": 10,
        "reliability": "reliable",
        "durability": "volatile",
        "deadline": infinite,
        "lifespan": infinite,
        "liveliness": "automatic",
        "liveliness_lease_duration": infinite,
        "avoid_ros_namespace_conventions": false,
    })
}
