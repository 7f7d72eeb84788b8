//! Property tests of the gateway library (no gateway process): the directory blob store never
//! touches a file outside its root and gives back what it stored, the outbox keeps its bounds
//! and its order, and the in-process streams (with their log, replay and rewrite) behave like a
//! plain map of keys to entry lists.

use bytes::Bytes;
use gateway::config::StorageConfig;
use gateway::storage::{Storage, StorageError};
use gateway::streams::{MemoryStreams, StreamId, Task, worker_key_of};
use gateway::wire::outbox::{Outbox, Push};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "gw-props-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Every file and directory under `dir` (relative, `/`-joined), and every symlink.
fn walk(dir: &Path) -> (BTreeSet<String>, BTreeSet<String>, Vec<String>) {
    fn go(
        dir: &Path,
        rel: &str,
        files: &mut BTreeSet<String>,
        dirs: &mut BTreeSet<String>,
        links: &mut Vec<String>,
    ) {
        for ent in std::fs::read_dir(dir).unwrap() {
            let ent = ent.unwrap();
            let name = ent.file_name().into_string().expect("UTF-8 file name");
            let full = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let t = ent.file_type().unwrap();
            if t.is_symlink() {
                links.push(full);
            } else if t.is_dir() {
                dirs.insert(full.clone());
                go(&ent.path(), &full, files, dirs, links);
            } else {
                files.insert(full);
            }
        }
    }
    let (mut files, mut dirs, mut links) = (BTreeSet::new(), BTreeSet::new(), Vec::new());
    go(dir, "", &mut files, &mut dirs, &mut links);
    (files, dirs, links)
}

// ---------------------------------------------------------------------------------------------
// Storage: names never escape the root, and what is stored reads back by its name.
// ---------------------------------------------------------------------------------------------

/// Path segments that probe the name checks: traversal, separators of other systems,
/// percent-encoded traversal, control bytes, long segments, unicode.
fn segment() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("..".to_string()),
        Just(".".to_string()),
        Just(String::new()),
        Just("a".to_string()),
        Just("b".to_string()),
        Just("%2e%2e".to_string()),
        Just("%2F".to_string()),
        Just("\\".to_string()),
        Just("..\\..".to_string()),
        Just("\0".to_string()),
        Just("\u{1}".to_string()),
        Just("\u{7f}".to_string()),
        Just("ä".to_string()),
        Just("😀".to_string()),
        Just("C:".to_string()),
        Just("~".to_string()),
        Just(".hidden".to_string()),
        Just("x".repeat(120)),
        any::<char>().prop_map(|c| c.to_string()),
    ];
    proptest::collection::vec(piece, 1..3).prop_map(|v| v.concat())
}

fn object_name() -> impl Strategy<Value = String> {
    let hostile = (
        prop::sample::select(vec!["", "", "", "/", "//", "./", "../", "/tmp/"]),
        proptest::collection::vec(segment(), 1..4),
        prop::sample::select(vec!["", "", "", "/", "/."]),
    )
        .prop_map(|(head, segs, tail)| format!("{head}{}{tail}", segs.join("/")));
    // Names from a tiny alphabet, so that one name is often a directory of another.
    let plain = proptest::collection::vec(prop::sample::select(vec!["a", "b", ".c"]), 1..4)
        .prop_map(|segs| segs.join("/"));
    prop_oneof![hostile, plain]
}

#[derive(Debug, Clone)]
enum StoreOp {
    Put(usize, Vec<u8>),
    Get(usize),
    Delete(usize),
    List(usize, bool),
}

fn store_op() -> impl Strategy<Value = StoreOp> {
    prop_oneof![
        4 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 0..16))
            .prop_map(|(i, d)| StoreOp::Put(i, d)),
        2 => any::<usize>().prop_map(StoreOp::Get),
        2 => any::<usize>().prop_map(StoreOp::Delete),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(i, s)| StoreOp::List(i, s)),
    ]
}

/// Whether `name` is at or below a stored object, so that treating it as a directory fails.
fn under_a_file(model: &BTreeMap<String, Vec<u8>>, name: &str) -> bool {
    model
        .keys()
        .any(|k| name == k || name.starts_with(&format!("{k}/")))
}

fn run_storage(names: Vec<String>, ops: Vec<StoreOp>) -> Result<(), TestCaseError> {
    let tmp = TempDir::new("st");
    // The root sits three levels down, so a name that climbs up to three levels lands inside
    // `tmp` where the walk below sees it.
    let root = tmp.0.join("l1/l2/root");
    let cfg = StorageConfig {
        path: root.clone(),
        ..Default::default()
    };
    let s = Storage::open(&cfg, Path::new("/nonexistent-base")).unwrap();
    let rt = runtime();
    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for op in ops {
        match op {
            StoreOp::Put(i, data) => {
                let name = &names[i % names.len()];
                match rt.block_on(s.put(name, Bytes::from(data.clone()))) {
                    Ok(()) => {
                        model.insert(name.clone(), data);
                    }
                    Err(e) => {
                        // A refusal leaves a stored object as it was.
                        prop_assert!(
                            !model.contains_key(name),
                            "put {name:?} failed over a stored object: {e}"
                        );
                    }
                }
            }
            StoreOp::Get(i) => {
                let name = &names[i % names.len()];
                let got = rt.block_on(s.get(name));
                match model.get(name) {
                    Some(d) => prop_assert_eq!(
                        got.ok().flatten(),
                        Some(Bytes::from(d.clone())),
                        "get {:?}",
                        name
                    ),
                    None => prop_assert!(
                        matches!(got, Ok(None) | Err(_)),
                        "get {:?} found {:?}, which was never stored",
                        name,
                        got
                    ),
                }
            }
            StoreOp::Delete(i) => {
                let name = &names[i % names.len()];
                let res = rt.block_on(s.delete(name));
                if model.remove(name).is_some() {
                    prop_assert!(res.is_ok(), "delete of stored {name:?}: {res:?}");
                }
            }
            StoreOp::List(i, slash) => {
                let mut prefix = if i % (names.len() + 1) == names.len() {
                    String::new()
                } else {
                    names[i % names.len()].clone()
                };
                if slash {
                    prefix.push('/');
                }
                let p = prefix.trim_end_matches('/');
                let want: Vec<String> = model
                    .keys()
                    .filter(|k| p.is_empty() || k.starts_with(&format!("{p}/")))
                    .cloned()
                    .collect();
                match rt.block_on(s.list(&prefix)) {
                    Ok(got) => prop_assert_eq!(got, want, "list {:?}", prefix),
                    Err(e) => {
                        // Refused prefixes are invalid names (a prefix of only slashes among
                        // them), ones no stored name is under, or stored objects themselves
                        // (not directories).
                        let invalid =
                            matches!(rt.block_on(s.get(p)), Err(StorageError::InvalidName(_)));
                        prop_assert!(
                            invalid || want.is_empty() || under_a_file(&model, p),
                            "list {prefix:?} failed ({e}) but would list {want:?}"
                        );
                    }
                }
            }
        }
        // Nothing outside the root; under it, exactly the stored objects (as regular files).
        let (files, dirs, links) = walk(&tmp.0);
        prop_assert!(links.is_empty(), "symlinks: {links:?}");
        let outside: Vec<&String> = files
            .iter()
            .chain(dirs.iter())
            .filter(|p| {
                !["l1", "l1/l2", "l1/l2/root"].contains(&p.as_str())
                    && !p.starts_with("l1/l2/root/")
            })
            .collect();
        prop_assert!(outside.is_empty(), "created outside the root: {outside:?}");
        let stored: BTreeSet<String> = files
            .iter()
            .map(|f| f["l1/l2/root/".len()..].to_string())
            .collect();
        let want: BTreeSet<String> = model.keys().cloned().collect();
        prop_assert_eq!(stored, want, "files under the root");
        for (k, v) in &model {
            prop_assert_eq!(&std::fs::read(root.join(k)).unwrap(), v, "file of {:?}", k);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn storage_names_stay_under_the_root(
        names in proptest::collection::vec(object_name(), 1..6),
        ops in proptest::collection::vec(store_op(), 1..24),
    ) {
        run_storage(names, ops)?;
    }
}

#[test]
fn list_shows_names_with_a_dot_segment() {
    let tmp = TempDir::new("dot");
    let cfg = StorageConfig {
        path: tmp.0.join("root"),
        ..Default::default()
    };
    let s = Storage::open(&cfg, Path::new(".")).unwrap();
    let rt = runtime();
    rt.block_on(async {
        s.put(".hidden", Bytes::from_static(b"x")).await.unwrap();
        s.put("a/.b/c", Bytes::from_static(b"y")).await.unwrap();
        assert_eq!(s.get(".hidden").await.unwrap().as_deref(), Some(&b"x"[..]));
        // The memory backend lists both; the directory backend lists neither.
        assert_eq!(s.list("").await.unwrap(), [".hidden", "a/.b/c"]);
    });
}

#[test]
fn failed_put_leaves_no_temporary_file() {
    let tmp = TempDir::new("leftover");
    let root = tmp.0.join("root");
    let cfg = StorageConfig {
        path: root.clone(),
        ..Default::default()
    };
    let s = Storage::open(&cfg, Path::new(".")).unwrap();
    let rt = runtime();
    rt.block_on(async {
        s.put("a/a", Bytes::from_static(b"x")).await.unwrap();
        // "a" is a directory now, so this put fails (EISDIR at the rename).
        assert!(s.put("a", Bytes::from_static(b"y")).await.is_err());
    });
    let (files, _, _) = walk(&root);
    assert_eq!(files, BTreeSet::from(["a/a".to_string()]));
}

// ---------------------------------------------------------------------------------------------
// Outbox: bounds, order, the overflow cut-off and close.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum OutOp {
    /// Push a frame of this many bytes.
    Push(usize),
    /// Drain without waiting for a wake-up (a writer already running).
    Drain,
    /// The write loop: wait for `wake` (polled once), then drain.
    Writer,
    /// The read side: check the closing flag.
    Reader,
    Close(u16),
}

fn out_op() -> impl Strategy<Value = OutOp> {
    prop_oneof![
        8 => (0usize..48).prop_map(OutOp::Push),
        1 => Just(OutOp::Drain),
        2 => Just(OutOp::Writer),
        1 => Just(OutOp::Reader),
        1 => (1000u16..5000).prop_map(OutOp::Close),
    ]
}

/// Polls a future once with a waker that does nothing.
fn ready_now<F: Future>(f: F) -> bool {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    matches!(f.as_mut().poll(&mut cx), Poll::Ready(_))
}

fn run_outbox(max_bytes: usize, max_frames: usize, ops: Vec<OutOp>) -> Result<(), TestCaseError> {
    let o = Outbox::new(max_bytes, max_frames);
    // The model: queued frames and their bytes, the scheduled close, and whether the write
    // and read loops have seen it.
    let mut frames: VecDeque<Bytes> = VecDeque::new();
    let mut bytes = 0usize;
    let mut close: Option<(u16, String)> = None;
    let mut writer_saw_close = false;
    let mut counter = 0u64;
    let sentinel = Bytes::from_static(b"already in out");

    for op in ops {
        match op {
            OutOp::Push(len) => {
                counter += 1;
                // Distinct contents (as far as the length allows), so loss, duplication or
                // reordering shows.
                let mut v = counter.to_le_bytes().repeat(len / 8 + 1);
                v.truncate(len);
                let frame = Bytes::from(v);
                let got = o.push(frame.clone());
                let want = if close.is_some() {
                    Push::Closed
                } else if (bytes > 0 && bytes + len > max_bytes) || frames.len() >= max_frames {
                    Push::Overflow
                } else {
                    Push::Queued
                };
                prop_assert_eq!(
                    &got,
                    &want,
                    "push of {} bytes onto {} frames / {} bytes",
                    len,
                    frames.len(),
                    bytes
                );
                match got {
                    Push::Queued => {
                        bytes += len;
                        frames.push_back(frame);
                    }
                    Push::Overflow => {
                        frames.clear();
                        bytes = 0;
                        let c = o.close_state();
                        prop_assert_eq!(c.as_ref().map(|c| c.0), Some(1008));
                        close = c;
                    }
                    Push::Closed => {}
                }
            }
            OutOp::Drain | OutOp::Writer => {
                let pending = !frames.is_empty() || (close.is_some() && !writer_saw_close);
                if matches!(op, OutOp::Writer) {
                    let woken = ready_now(o.wake.notified());
                    prop_assert!(
                        woken || !pending,
                        "writer not woken with {} frames queued, close {:?}",
                        frames.len(),
                        close
                    );
                    if !woken {
                        continue;
                    }
                }
                let mut out = vec![sentinel.clone()];
                let got_close = o.drain(&mut out);
                prop_assert_eq!(&out[0], &sentinel, "drain replaced what `out` held");
                let batch = &out[1..];
                // The bounds, as the writer sees them.
                prop_assert!(
                    batch.len() <= max_frames,
                    "{} frames > {}",
                    batch.len(),
                    max_frames
                );
                let total: usize = batch.iter().map(|f| f.len()).sum();
                let nonempty = batch.iter().filter(|f| !f.is_empty()).count();
                prop_assert!(
                    total <= max_bytes || nonempty == 1,
                    "{} bytes in {} frames > {}",
                    total,
                    batch.len(),
                    max_bytes
                );
                // Push order, nothing lost or duplicated.
                prop_assert_eq!(batch, frames.make_contiguous());
                prop_assert_eq!(&got_close, &close);
                frames.clear();
                bytes = 0;
                if got_close.is_some() && matches!(op, OutOp::Writer) {
                    writer_saw_close = true;
                }
            }
            OutOp::Reader => {
                // The read side checks the flag on every wake-up (the writer's wake covers a
                // close, asserted above): it must be set exactly when a close is scheduled.
                prop_assert_eq!(o.is_closing(), close.is_some());
            }
            OutOp::Close(code) => {
                let first = o.close(code, "bye");
                prop_assert_eq!(first, close.is_none());
                if close.is_none() {
                    close = Some((code, "bye".into()));
                }
            }
        }
        prop_assert_eq!(o.close_state(), close.clone());
    }
    Ok(())
}

proptest! {
    #[test]
    fn outbox_keeps_bounds_and_order(
        max_bytes in 0usize..64,
        max_frames in 0usize..8,
        ops in proptest::collection::vec(out_op(), 1..64),
    ) {
        run_outbox(max_bytes, max_frames, ops)?;
    }
}

// ---------------------------------------------------------------------------------------------
// In-process streams against a model: add, retained append, trim, delete, reads, reopen
// (replay and rewrite of the log).
// ---------------------------------------------------------------------------------------------

/// Stream keys: room keys of two prefixes (one with a ':' and one whose room is itself "room",
/// so the worker key comes from the last ":room:"), and a retained-log key that is no room key.
const KEYS: [&str; 5] = [
    "y:room:a:index",
    "y:room:b%3Ac:index",
    "p:q:room:r:d",
    "y:room:room:x:index",
    "ably:h:c",
];

#[derive(Debug, Clone)]
enum StreamOp {
    Add {
        key: usize,
        len: usize,
    },
    Retained {
        key: usize,
        len: usize,
        keep_zero: bool,
    },
    /// Trim (through the stream's compaction task when it has one) at a MINID picked from the
    /// model's entries.
    Trim {
        key: usize,
        pick: usize,
        plus_one: bool,
    },
    /// `finish_empty` with the stream's task (or a task id that is not queued).
    FinishEmpty {
        key: usize,
    },
    Read {
        key: usize,
        pick: usize,
        nudge: bool,
        count: usize,
    },
    ReadBack {
        key: usize,
        pick: usize,
        nudge: bool,
        count: usize,
    },
    Reopen,
    Sleep(u64),
}

fn stream_op() -> impl Strategy<Value = StreamOp> {
    let key = 0..KEYS.len();
    prop_oneof![
        6 => (key.clone(), 0usize..24).prop_map(|(key, len)| StreamOp::Add { key, len }),
        2 => (key.clone(), 0usize..24, any::<bool>())
            .prop_map(|(key, len, keep_zero)| StreamOp::Retained { key, len, keep_zero }),
        3 => (key.clone(), any::<usize>(), any::<bool>())
            .prop_map(|(key, pick, plus_one)| StreamOp::Trim { key, pick, plus_one }),
        2 => key.clone().prop_map(|key| StreamOp::FinishEmpty { key }),
        2 => (key.clone(), any::<usize>(), any::<bool>(), 0usize..4)
            .prop_map(|(key, pick, nudge, count)| StreamOp::Read { key, pick, nudge, count }),
        2 => (key.clone(), any::<usize>(), any::<bool>(), 0usize..4)
            .prop_map(|(key, pick, nudge, count)| StreamOp::ReadBack { key, pick, nudge, count }),
        1 => Just(StreamOp::Reopen),
        3 => (1u64..3).prop_map(StreamOp::Sleep),
    ]
}

#[derive(Debug, Default)]
struct ModelStream {
    entries: Vec<(StreamId, Bytes)>,
    /// The last id ever added (kept through trims to nothing and through reopens).
    last: StreamId,
    /// Whether a compaction task is queued for the stream.
    task: bool,
}

type Model = BTreeMap<String, ModelStream>;

struct StreamsCase {
    dir: TempDir,
    s: Arc<MemoryStreams>,
    model: Model,
    rt: tokio::runtime::Runtime,
    counter: u64,
}

impl StreamsCase {
    fn new() -> StreamsCase {
        let dir = TempDir::new("streams");
        let s = MemoryStreams::open(&dir.0, Duration::ZERO).unwrap();
        StreamsCase {
            dir,
            s,
            model: Model::new(),
            rt: runtime(),
            counter: 0,
        }
    }

    fn data(&mut self, len: usize) -> Bytes {
        self.counter += 1;
        let mut v = self.counter.to_le_bytes().repeat(len / 8 + 1);
        v.truncate(len);
        Bytes::from(v)
    }

    /// An id to read from: one of the key's ids (or just after it), 0-0 or the maximum.
    fn pick_id(&self, key: &str, pick: usize, nudge: bool) -> StreamId {
        let ids: Vec<StreamId> = self
            .model
            .get(key)
            .map(|m| m.entries.iter().map(|e| e.0).collect())
            .unwrap_or_default();
        let i = pick % (ids.len() + 2);
        let id = if i < ids.len() {
            ids[i]
        } else if i == ids.len() {
            StreamId::ZERO
        } else {
            StreamId::MAX
        };
        if nudge && id != StreamId::MAX {
            StreamId {
                ms: id.ms,
                seq: id.seq + 1,
            }
        } else {
            id
        }
    }

    /// The task queued for `key` according to the backend, or one whose id is not queued.
    fn task_of(&self, key: &str) -> (String, Task) {
        let wk = worker_key_of(key).unwrap_or_else(|_| "none:worker".into());
        let found = self
            .s
            .claim_tasks(&wk, 0, u32::MAX)
            .into_iter()
            .find(|t| t.stream == key);
        let task = found.unwrap_or(Task {
            id: StreamId::MAX,
            stream: key.to_string(),
        });
        (wk, task)
    }

    fn check_id(
        &self,
        key: &str,
        id: StreamId,
        before: u64,
        after: u64,
    ) -> Result<(), TestCaseError> {
        if let Some(m) = self.model.get(key) {
            prop_assert!(id > m.last, "{key}: id {id} not after {}", m.last);
            prop_assert!(
                id.ms <= after.max(m.last.ms),
                "{key}: id {id} from the future"
            );
        } else {
            prop_assert!(id.ms <= after, "{key}: id {id} from the future");
        }
        prop_assert!(
            id.ms >= before,
            "{key}: id {id} older than the clock ({before})"
        );
        Ok(())
    }

    fn step(&mut self, op: StreamOp) -> Result<(), TestCaseError> {
        let now = gateway::clock::now_ms;
        match op {
            StreamOp::Add { key, len } => {
                let key = KEYS[key];
                let data = self.data(len);
                let before = now();
                let res = self.rt.block_on(self.s.add_message(key, data.clone()));
                let after = now();
                if worker_key_of(key).is_err() {
                    prop_assert!(res.is_err(), "add_message accepted {key}");
                    return Ok(());
                }
                let id = res.map_err(|e| TestCaseError::fail(format!("add {key}: {e}")))?;
                self.check_id(key, id, before, after)?;
                let m = self
                    .model
                    .entry(key.to_string())
                    .or_insert_with(|| ModelStream {
                        task: true, // a new stream is queued for compaction
                        ..Default::default()
                    });
                m.entries.push((id, data));
                m.last = id;
            }
            StreamOp::Retained {
                key,
                len,
                keep_zero,
            } => {
                let key = KEYS[key];
                let data = self.data(len);
                let keep = if keep_zero { 0 } else { u64::MAX };
                let prev_last = self.model.get(key).map(|m| m.last);
                let before = now();
                let id = self
                    .s
                    .append_retained(key, data.clone(), keep)
                    .map_err(|e| TestCaseError::fail(format!("append_retained {key}: {e}")))?;
                let after = now();
                self.check_id(key, id, before, after)?;
                let m = self.model.entry(key.to_string()).or_default();
                m.entries.push((id, data));
                m.last = id;
                if keep_zero {
                    // Entries older than the call's clock reading go; the reading is only
                    // known to lie in [before, after] (exactly id.ms when the id starts a
                    // new millisecond), so check the backend's choice against that.
                    let got = self.s.read(key, StreamId::ZERO, 0);
                    let n = m.entries.len();
                    prop_assert!(!got.is_empty() && got.len() <= n);
                    let dropped = n - got.len();
                    let kept = &m.entries[dropped..];
                    prop_assert!(
                        got.iter()
                            .zip(kept)
                            .all(|(g, k)| g.id == k.0 && g.data == k.1),
                        "retained trim of {key} kept something other than a suffix"
                    );
                    let exact = id.seq == 0 && prev_last.is_none_or(|l| l.ms < id.ms);
                    let (lo, hi) = if exact {
                        (id.ms, id.ms)
                    } else {
                        (before, after.min(id.ms))
                    };
                    let lo = match dropped {
                        0 => lo,
                        d => lo.max(m.entries[d - 1].0.ms + 1),
                    };
                    let hi = hi.min(kept[0].0.ms);
                    prop_assert!(
                        lo <= hi,
                        "retained trim of {key} with keep 0 dropped {dropped} of {n} entries \
                         ({:?}), clock in [{before}, {after}]",
                        m.entries
                            .iter()
                            .map(|e| e.0.to_string())
                            .collect::<Vec<_>>()
                    );
                    m.entries.drain(..dropped);
                }
            }
            StreamOp::Trim {
                key,
                pick,
                plus_one,
            } => {
                let key = KEYS[key];
                let min_ms = match self.model.get(key) {
                    Some(m) => {
                        // One of the entries' milliseconds (or the one after it), past the
                        // last id, or 0.
                        let mut ms: Vec<u64> = m.entries.iter().map(|e| e.0.ms).collect();
                        ms.dedup();
                        let n = ms.len();
                        match pick % (n + 2) {
                            i if i < n => ms[i] + u64::from(plus_one),
                            i if i == n => m.last.ms + 1,
                            _ => 0,
                        }
                    }
                    None => pick as u64,
                };
                let (wk, task) = self.task_of(key);
                self.rt
                    .block_on(self.s.trim_and_requeue(&wk, &task, min_ms))
                    .map_err(|e| TestCaseError::fail(format!("trim {key}: {e}")))?;
                if let Some(m) = self.model.get_mut(key) {
                    m.entries.retain(|e| e.0.ms >= min_ms);
                }
            }
            StreamOp::FinishEmpty { key } => {
                let key = KEYS[key];
                let (wk, task) = self.task_of(key);
                self.rt
                    .block_on(self.s.finish_empty(&wk, &task))
                    .map_err(|e| TestCaseError::fail(format!("finish_empty {key}: {e}")))?;
                if let Some(m) = self.model.get_mut(key) {
                    m.task = false;
                    if m.entries.is_empty() {
                        self.model.remove(key);
                    }
                }
            }
            StreamOp::Read {
                key,
                pick,
                nudge,
                count,
            } => {
                let key = KEYS[key];
                let after = self.pick_id(key, pick, nudge);
                let got: Vec<(StreamId, Bytes)> = self
                    .s
                    .read(key, after, count)
                    .into_iter()
                    .map(|e| (e.id, e.data))
                    .collect();
                let want: Vec<(StreamId, Bytes)> = self
                    .model
                    .get(key)
                    .map(|m| {
                        m.entries
                            .iter()
                            .filter(|e| e.0 > after)
                            .take(if count == 0 { usize::MAX } else { count })
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                prop_assert_eq!(got, want, "read {} after {} count {}", key, after, count);
            }
            StreamOp::ReadBack {
                key,
                pick,
                nudge,
                count,
            } => {
                let key = KEYS[key];
                let before = self.pick_id(key, pick, nudge);
                let got: Vec<(StreamId, Bytes)> = self
                    .s
                    .read_back(key, before, count)
                    .into_iter()
                    .map(|e| (e.id, e.data))
                    .collect();
                let want: Vec<(StreamId, Bytes)> = self
                    .model
                    .get(key)
                    .map(|m| {
                        m.entries
                            .iter()
                            .rev()
                            .filter(|e| e.0 < before)
                            .take(count)
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                prop_assert_eq!(
                    got,
                    want,
                    "read_back {} before {} count {}",
                    key,
                    before,
                    count
                );
            }
            StreamOp::Reopen => self.reopen()?,
            StreamOp::Sleep(ms) => std::thread::sleep(Duration::from_millis(ms)),
        }
        self.check()
    }

    /// Closes the streams and opens them again from the log: the replay must give the model
    /// back, and every stream gets a compaction task again.
    fn reopen(&mut self) -> Result<(), TestCaseError> {
        self.s.close();
        let s = std::mem::replace(&mut self.s, MemoryStreams::ephemeral());
        drop(s);
        self.s = MemoryStreams::open(&self.dir.0, Duration::ZERO)
            .map_err(|e| TestCaseError::fail(format!("reopen: {e}")))?;
        for (k, m) in self.model.iter_mut() {
            m.task = worker_key_of(k).is_ok();
        }
        Ok(())
    }

    /// Every key's entries, the stream count and the compaction queues equal the model's.
    fn check(&self) -> Result<(), TestCaseError> {
        for key in KEYS {
            let got: Vec<(StreamId, Bytes)> = self
                .s
                .read(key, StreamId::ZERO, 0)
                .into_iter()
                .map(|e| (e.id, e.data))
                .collect();
            let want = self
                .model
                .get(key)
                .map(|m| m.entries.clone())
                .unwrap_or_default();
            prop_assert_eq!(self.s.len(key), want.len() as u64, "len {}", key);
            prop_assert_eq!(got, want, "entries of {}", key);
        }
        let worker_keys: BTreeSet<String> =
            KEYS.iter().filter_map(|k| worker_key_of(k).ok()).collect();
        let prefixes: Vec<String> = worker_keys
            .iter()
            .map(|w| w.trim_end_matches(":worker").to_string())
            .collect();
        let stats = self.s.stats(&prefixes);
        prop_assert_eq!(stats.streams, Some(self.model.len() as u64), "stream count");
        let tasks = self.model.values().filter(|m| m.task).count() as u64;
        prop_assert_eq!(stats.worker_queue, tasks, "queued tasks");
        for wk in &worker_keys {
            let mut got: Vec<String> = self
                .s
                .claim_tasks(wk, 0, u32::MAX)
                .into_iter()
                .map(|t| t.stream)
                .collect();
            got.sort();
            let want: Vec<String> = self
                .model
                .iter()
                .filter(|(k, m)| m.task && worker_key_of(k).ok().as_ref() == Some(wk))
                .map(|(k, _)| k.clone())
                .collect();
            prop_assert_eq!(got, want, "tasks on {}", wk);
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn memory_streams_follow_the_model(ops in proptest::collection::vec(stream_op(), 1..48)) {
        let mut case = StreamsCase::new();
        for op in ops {
            case.step(op)?;
        }
        case.reopen()?;
        case.check()?;
    }
}

proptest! {
    // Each case writes more than the log's rewrite threshold (64 MiB), so only a few.
    #![proptest_config(ProptestConfig { cases: 3, ..ProptestConfig::default() })]

    #[test]
    fn memory_streams_rewrite_their_log(
        before in proptest::collection::vec(stream_op(), 0..16),
        during in proptest::collection::vec(stream_op(), 0..16),
        after in proptest::collection::vec(stream_op(), 0..16),
    ) {
        let mut case = StreamsCase::new();
        for op in before {
            case.step(op)?;
        }
        // Flood one stream past the default rewrite threshold (64 MiB), then trim it to
        // nothing: the trim's commit finds the log mostly garbage and rewrites it from the live
        // entries.
        let key = KEYS[2];
        let chunk = Bytes::from(vec![7u8; 4 << 20]);
        for _ in 0..17 {
            let before = gateway::clock::now_ms();
            let id = case
                .rt
                .block_on(case.s.add_message(key, chunk.clone()))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            case.check_id(key, id, before, gateway::clock::now_ms())?;
            let m = case.model.entry(key.to_string()).or_insert_with(|| ModelStream {
                task: true,
                ..Default::default()
            });
            m.entries.push((id, chunk.clone()));
            m.last = id;
        }
        let log = case.dir.0.join("streams.log");
        let big = std::fs::metadata(&log).unwrap().len();
        prop_assert!(big > 64 << 20, "log is {} bytes", big);
        // The pick just past the distinct milliseconds trims past the last id.
        let mut ms: Vec<u64> = case.model[key].entries.iter().map(|e| e.0.ms).collect();
        ms.dedup();
        case.step(StreamOp::Trim { key: 2, pick: ms.len(), plus_one: false })?;
        prop_assert!(case.model[key].entries.is_empty());
        // The rewrite may run in the background: changes made meanwhile must reach the new
        // log too. (No reopen while it runs: a process has one instance, and an instance
        // dropped mid-rewrite is not what a restart looks like.)
        for op in during.into_iter().filter(|op| !matches!(op, StreamOp::Reopen)) {
            case.step(op)?;
        }
        let waited = std::time::Instant::now();
        let small = loop {
            let len = std::fs::metadata(&log).unwrap().len();
            if len < 1 << 20 || waited.elapsed() > Duration::from_secs(10) {
                break len;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        prop_assert!(small < 1 << 20, "log not rewritten: {} bytes", small);
        case.check()?;
        for op in after {
            case.step(op)?;
        }
        case.reopen()?;
        case.check()?;
    }
}
