//! Loading and atomically saving the state file.
//!
//! A save writes a temp file in the same folder, fsyncs it, copies the current file to
//! `.backup`, renames the temp file over the state file and fsyncs the folder. A crash at any
//! point leaves either the old or the new file in place, never a mix. Loading refuses a
//! damaged file (and names the backup) instead of starting from scratch.

use std::fs;
use std::path::Path;

use super::{Paths, State, StateError, FORMAT_VERSION};
use fsops::Point;

/// Read the state, or `None` when the file does not exist.
pub fn load(paths: &Paths, env: &str) -> Result<Option<State>, StateError> {
    let text = match fs::read(&paths.state) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Read {
                path: paths.state.clone(),
                source,
            })
        }
    };
    let state = parse(&text).map_err(|reason| StateError::Corrupt {
        path: paths.state.clone(),
        reason,
        backup: paths.backup.clone(),
        backup_note: if paths.backup.exists() {
            String::new()
        } else {
            " (which does not exist)".to_string()
        },
    })?;
    if state.format_version != FORMAT_VERSION {
        return Err(StateError::Version {
            path: paths.state.clone(),
            found: state.format_version,
        });
    }
    if state.env != env {
        return Err(StateError::WrongEnv {
            path: paths.state.clone(),
            found: state.env,
            expected: env.to_string(),
        });
    }
    Ok(Some(state))
}

/// Parse and check a state document. Never panics, whatever the bytes.
pub fn parse(bytes: &[u8]) -> Result<State, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    if text.trim().is_empty() {
        return Err("the file is empty".to_string());
    }
    let state: State = serde_json::from_str(text)
        .map_err(|e| format!("line {}, column {}: {e}", e.line(), e.column()))?;
    for (id, entry) in &state.resources {
        if entry.spec.kind() != entry.kind {
            return Err(format!(
                "resource `{id}` says kind {} but its spec is a {}",
                entry.kind,
                entry.spec.kind()
            ));
        }
        if entry.status == super::Status::Created && entry.cloud_id.is_empty() {
            return Err(format!(
                "resource `{id}` is marked created but has no cloud id"
            ));
        }
        for dep in &entry.depends_on {
            if !state.resources.contains_key(dep) {
                return Err(format!(
                    "resource `{id}` depends on `{dep}`, which is not in the state"
                ));
            }
        }
    }
    Ok(state)
}

/// Write `bytes` to `path` atomically with `mode`, keeping the old file as `backup`.
pub fn write_atomic(
    path: &Path,
    backup: Option<&Path>,
    bytes: &[u8],
    mode: u32,
) -> std::io::Result<()> {
    let old = match backup {
        Some(backup) if path.exists() => Some((backup, fs::read(path)?)),
        _ => None,
    };
    write_atomic_with(
        path,
        old.as_ref().map(|(b, bytes)| (*b, bytes.as_slice())),
        bytes,
        mode,
    )
}

/// Write `bytes` to `path` atomically with `mode`; with `backup = Some((file, old))`, first
/// replace `file` atomically with `old` (the current content, already checked by the caller).
fn write_atomic_with(
    path: &Path,
    backup: Option<(&Path, &[u8])>,
    bytes: &[u8],
    mode: u32,
) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".provision-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    fsops::created(tmp.path());
    set_mode(tmp.path(), mode)?;
    let tmp_path = tmp.path().to_path_buf();
    fsops::write(tmp.as_file_mut(), &tmp_path, bytes, Point::WriteTemp)?;
    fsops::sync_file(tmp.as_file(), &tmp_path, Point::SyncTemp)?;
    if let Some((backup, old)) = backup {
        // Copy (not rename) so the state file never disappears, even for a moment.
        let mut b = tempfile::Builder::new()
            .prefix(".provision-")
            .suffix(".bak")
            .tempfile_in(dir)?;
        fsops::created(b.path());
        set_mode(b.path(), mode)?;
        let b_path = b.path().to_path_buf();
        fsops::write(b.as_file_mut(), &b_path, old, Point::WriteBackup)?;
        fsops::sync_file(b.as_file(), &b_path, Point::SyncBackup)?;
        fsops::check(Point::RenameBackup)?;
        b.persist(backup).map_err(|e| e.error)?;
        fsops::renamed(&b_path, backup);
    }
    fsops::check(Point::Rename)?;
    tmp.persist(path).map_err(|e| e.error)?;
    fsops::renamed(&tmp_path, path);
    fsops::sync_dir(dir, Point::SyncDir)
}

/// The filesystem steps of [`write_atomic`], each through one function so tests can see
/// them: fault injection (make one step fail as if the disk filled up or the process died
/// there) and a trace of what reached the disk (`write`, `fsync` of a file, `rename`,
/// `fsync` of the folder), which the tests replay through a model of a crash that loses
/// everything not yet synced. Both compile to nothing outside tests.
mod fsops {
    use std::io::Write;
    use std::path::Path;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Point {
        /// Half the temp file is written, then the write fails.
        WriteTemp,
        SyncTemp,
        /// Half the backup copy is written, then the write fails.
        WriteBackup,
        SyncBackup,
        RenameBackup,
        Rename,
        SyncDir,
    }

    /// One step that reached the filesystem, recorded after it succeeded (only tests
    /// read it).
    #[cfg_attr(not(test), allow(dead_code))]
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Op {
        Create(std::path::PathBuf),
        Write(std::path::PathBuf, Vec<u8>),
        SyncFile(std::path::PathBuf),
        Rename(std::path::PathBuf, std::path::PathBuf),
        SyncDir(std::path::PathBuf),
    }

    #[cfg(test)]
    thread_local! {
        pub static FAIL_AT: std::cell::Cell<Option<Point>> = const { std::cell::Cell::new(None) };
        /// `Some` while a test records the steps of this thread's saves.
        pub static TRACE: std::cell::RefCell<Option<Vec<Op>>> = const { std::cell::RefCell::new(None) };
    }

    #[cfg(test)]
    fn record(op: impl FnOnce() -> Op) {
        TRACE.with(|t| {
            if let Some(trace) = t.borrow_mut().as_mut() {
                trace.push(op());
            }
        });
    }

    #[cfg(not(test))]
    fn record(_op: impl FnOnce() -> Op) {}

    fn armed(_point: Point) -> bool {
        #[cfg(test)]
        {
            FAIL_AT.with(|f| f.get() == Some(_point))
        }
        #[cfg(not(test))]
        {
            false
        }
    }

    fn injected(point: Point) -> std::io::Error {
        std::io::Error::other(format!("injected failure at {point:?}"))
    }

    pub fn check(point: Point) -> std::io::Result<()> {
        if armed(point) {
            return Err(injected(point));
        }
        Ok(())
    }

    pub fn created(_path: &Path) {
        record(|| Op::Create(_path.to_path_buf()));
    }

    /// `write_all`, or half of it and an error when `point` is armed.
    pub fn write(
        file: &mut std::fs::File,
        _path: &Path,
        bytes: &[u8],
        point: Point,
    ) -> std::io::Result<()> {
        if armed(point) {
            file.write_all(&bytes[..bytes.len() / 2])?;
            record(|| Op::Write(_path.to_path_buf(), bytes[..bytes.len() / 2].to_vec()));
            return Err(injected(point));
        }
        file.write_all(bytes)?;
        record(|| Op::Write(_path.to_path_buf(), bytes.to_vec()));
        Ok(())
    }

    /// `fsync` of a file's data and metadata.
    pub fn sync_file(file: &std::fs::File, _path: &Path, point: Point) -> std::io::Result<()> {
        check(point)?;
        file.sync_all()?;
        record(|| Op::SyncFile(_path.to_path_buf()));
        Ok(())
    }

    pub fn renamed(_from: &Path, _to: &Path) {
        record(|| Op::Rename(_from.to_path_buf(), _to.to_path_buf()));
    }

    /// `fsync` of a folder: makes its entries (a rename into it) durable.
    pub fn sync_dir(dir: &Path, point: Point) -> std::io::Result<()> {
        check(point)?;
        std::fs::File::open(dir)?.sync_all()?;
        record(|| Op::SyncDir(dir.to_path_buf()));
        Ok(())
    }
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// Bump the serial and save the state (mode 0600), keeping the previous file as `.backup`.
///
/// The file on disk is checked first: one that does not parse (damaged, hand-edited) is
/// never overwritten and never copied over a good `.backup`; one of another lineage or
/// environment is never clobbered. On failure the in-memory serial is left as it was.
pub fn save(paths: &Paths, state: &mut State) -> Result<(), StateError> {
    let on_disk = match fs::read(&paths.state) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(StateError::Read {
                path: paths.state.clone(),
                source,
            })
        }
    };
    if let Some(bytes) = &on_disk {
        let current = parse(bytes).map_err(|reason| StateError::Corrupt {
            path: paths.state.clone(),
            reason,
            backup: paths.backup.clone(),
            backup_note: if paths.backup.exists() {
                String::new()
            } else {
                " (which does not exist)".to_string()
            },
        })?;
        // Refuse to clobber a file that someone replaced under our lock.
        if current.lineage != state.lineage {
            return Err(StateError::Lineage {
                path: paths.state.clone(),
                found: current.lineage,
                expected: state.lineage.clone(),
            });
        }
        if current.env != state.env {
            return Err(StateError::WrongEnv {
                path: paths.state.clone(),
                found: current.env,
                expected: state.env.clone(),
            });
        }
    }
    state.serial += 1;
    let mut text = serde_json::to_vec_pretty(state).expect("state serializes");
    text.push(b'\n');
    let backup = on_disk.as_deref().map(|old| (paths.backup.as_path(), old));
    write_atomic_with(&paths.state, backup, &text, 0o600).map_err(|source| {
        state.serial -= 1;
        StateError::Write {
            path: paths.state.clone(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LogicalId, Spec, VpcSpec};
    use crate::state::{Entry, Status};

    fn sample(env: &str) -> State {
        let mut s = State::new(env);
        s.resources.insert(
            LogicalId::new("vpc"),
            Entry {
                kind: crate::model::Kind::Vpc,
                status: Status::Created,
                cloud_id: "vpc-1".into(),
                token: "t".into(),
                token_spent: false,
                spec: Spec::Vpc(VpcSpec {
                    cidr: "10.0.0.0/16".into(),
                }),
                attrs: Default::default(),
                depends_on: vec![],
                updated_at: String::new(),
            },
        );
        s
    }

    #[test]
    fn save_then_load_round_trips_with_mode_and_backup() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path(), "lab");
        let mut s = sample("lab");
        save(&paths, &mut s).unwrap();
        assert_eq!(s.serial, 1);
        assert!(!paths.backup.exists(), "no backup before a second save");
        save(&paths, &mut s).unwrap();
        let loaded = load(&paths, "lab").unwrap().unwrap();
        assert_eq!(loaded, s);
        let backup: State = serde_json::from_slice(&fs::read(&paths.backup).unwrap()).unwrap();
        assert_eq!(backup.serial, 1);
        let mode = fs::metadata(&paths.state).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let mode = fs::metadata(&paths.backup).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    /// Leftover temp files of a failed save.
    fn temp_files(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".provision-"))
            .collect()
    }

    #[test]
    fn a_save_failing_at_any_point_leaves_the_file_and_the_backup_intact() {
        use fsops::Point;
        for point in [
            Point::WriteTemp,
            Point::SyncTemp,
            Point::WriteBackup,
            Point::SyncBackup,
            Point::RenameBackup,
            Point::Rename,
            Point::SyncDir,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let paths = Paths::new(dir.path(), "lab");
            let mut s = sample("lab");
            save(&paths, &mut s).unwrap();
            save(&paths, &mut s).unwrap();
            let (old_state, old_backup) = (
                fs::read(&paths.state).unwrap(),
                fs::read(&paths.backup).unwrap(),
            );
            let old_serial = s.serial;
            s.resources
                .get_mut(&LogicalId::new("vpc"))
                .unwrap()
                .cloud_id = "vpc-2".into();

            fsops::FAIL_AT.with(|f| f.set(Some(point)));
            let result = save(&paths, &mut s);
            fsops::FAIL_AT.with(|f| f.set(None));

            let err = result.expect_err("the injected failure reaches the caller");
            assert!(
                err.to_string().contains(&format!("{point:?}")),
                "{point:?}: {err}"
            );
            assert_eq!(s.serial, old_serial, "{point:?}: serial not bumped");
            let state_now = fs::read(&paths.state).unwrap();
            let backup_now = fs::read(&paths.backup).unwrap();
            if point == Point::SyncDir {
                // The rename happened: the new file is complete; the backup is the old file.
                assert_eq!(
                    parse(&state_now).unwrap().resources[&LogicalId::new("vpc")].cloud_id,
                    "vpc-2"
                );
                assert_eq!(backup_now, old_state, "{point:?}");
            } else {
                assert_eq!(state_now, old_state, "{point:?}: state file untouched");
                // The backup is the previous backup or a full copy of the current file.
                assert!(
                    backup_now == old_backup || backup_now == old_state,
                    "{point:?}: backup damaged"
                );
                assert_eq!(load(&paths, "lab").unwrap().unwrap().serial, old_serial);
            }
            parse(&backup_now).expect("the backup parses");
            assert!(
                temp_files(dir.path()).is_empty(),
                "{point:?}: {:?}",
                temp_files(dir.path())
            );
            // The next save works and keeps going from there.
            save(&paths, &mut s).unwrap();
            assert_eq!(load(&paths, "lab").unwrap().unwrap(), s);
        }
    }

    /// What a crash leaves on disk after the first `upto` steps of `trace`, in the model of
    /// a crash that loses everything not yet synced: a file's data survives only once the
    /// file was fsynced, a name (a new file, a rename) only once its folder was fsynced.
    /// `initial` is what was on disk, durably, before the steps.
    fn after_crash(
        initial: &[(std::path::PathBuf, Vec<u8>)],
        trace: &[fsops::Op],
    ) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
        use fsops::Op;
        use std::collections::BTreeMap;
        // inode -> (durable data, data written so far)
        let mut inodes: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut durable: BTreeMap<std::path::PathBuf, usize> = BTreeMap::new();
        for (path, bytes) in initial {
            inodes.push((bytes.clone(), bytes.clone()));
            durable.insert(path.clone(), inodes.len() - 1);
        }
        let mut live = durable.clone();
        for op in trace {
            match op {
                Op::Create(p) => {
                    inodes.push((Vec::new(), Vec::new()));
                    live.insert(p.clone(), inodes.len() - 1);
                }
                Op::Write(p, bytes) => inodes[live[p]].1.extend_from_slice(bytes),
                Op::SyncFile(p) => {
                    let i = live[p];
                    inodes[i].0 = inodes[i].1.clone();
                }
                Op::Rename(from, to) => {
                    let i = live.remove(from).expect("renamed file exists");
                    live.insert(to.clone(), i);
                }
                Op::SyncDir(dir) => {
                    let in_dir = |p: &std::path::PathBuf| p.parent() == Some(dir.as_path());
                    durable.retain(|p, _| !in_dir(p));
                    durable.extend(
                        live.iter()
                            .filter(|(p, _)| in_dir(p))
                            .map(|(p, i)| (p.clone(), *i)),
                    );
                }
            }
        }
        durable
            .into_iter()
            .map(|(p, i)| (p, inodes[i].0.clone()))
            .collect()
    }

    /// Run `f` with this thread's filesystem steps recorded; the steps.
    fn traced<T>(f: impl FnOnce() -> T) -> (T, Vec<fsops::Op>) {
        fsops::TRACE.with(|t| *t.borrow_mut() = Some(Vec::new()));
        let out = f();
        let trace = fsops::TRACE.with(|t| t.borrow_mut().take()).unwrap();
        (out, trace)
    }

    #[test]
    fn a_crash_after_any_step_of_a_save_leaves_the_old_or_the_new_file_and_after_it_the_new() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path(), "lab");
        let mut s = sample("lab");
        save(&paths, &mut s).unwrap();
        save(&paths, &mut s).unwrap();
        let old_state = fs::read(&paths.state).unwrap();
        let old_backup = fs::read(&paths.backup).unwrap();
        s.resources
            .get_mut(&LogicalId::new("vpc"))
            .unwrap()
            .cloud_id = "vpc-2".into();
        let (result, trace) = traced(|| save(&paths, &mut s));
        result.unwrap();
        let new_state = fs::read(&paths.state).unwrap();
        assert_ne!(new_state, old_state);
        let initial = [
            (paths.state.clone(), old_state.clone()),
            (paths.backup.clone(), old_backup.clone()),
        ];
        for upto in 0..=trace.len() {
            let disk = after_crash(&initial, &trace[..upto]);
            let state = disk.get(&paths.state);
            assert!(
                state == Some(&old_state) || state == Some(&new_state),
                "a crash after {:?} leaves a state file of {:?} bytes",
                trace[..upto].last(),
                state.map(Vec::len)
            );
            let backup = disk.get(&paths.backup);
            assert!(
                backup == Some(&old_backup) || backup == Some(&old_state),
                "a crash after {:?} leaves a damaged backup",
                trace[..upto].last()
            );
        }
        // Once save returned, a crash keeps what it wrote: the new file, the old as backup.
        let disk = after_crash(&initial, &trace);
        assert_eq!(
            disk.get(&paths.state),
            Some(&new_state),
            "the saved state is not durable when save returns: {trace:?}"
        );
        assert_eq!(disk.get(&paths.backup), Some(&old_state), "{trace:?}");
    }

    #[test]
    fn the_first_save_is_durable_when_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path(), "lab");
        let mut s = sample("lab");
        let (result, trace) = traced(|| save(&paths, &mut s));
        result.unwrap();
        let new_state = fs::read(&paths.state).unwrap();
        for upto in 0..trace.len() {
            let state = after_crash(&[], &trace[..upto]).remove(&paths.state);
            assert!(state.is_none() || state == Some(new_state.clone()));
        }
        assert_eq!(
            after_crash(&[], &trace).remove(&paths.state),
            Some(new_state),
            "{trace:?}"
        );
    }

    #[test]
    fn save_never_overwrites_a_damaged_file_nor_its_backup() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path(), "lab");
        let mut s = sample("lab");
        save(&paths, &mut s).unwrap();
        save(&paths, &mut s).unwrap();
        let good_backup = fs::read(&paths.backup).unwrap();
        let full = fs::read(&paths.state).unwrap();
        for damaged in [
            full[..full.len() / 2].to_vec(),
            b"".to_vec(),
            b"{\"hand\": \"edited\"}".to_vec(),
        ] {
            fs::write(&paths.state, &damaged).unwrap();
            let serial = s.serial;
            let err = save(&paths, &mut s).unwrap_err();
            assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
            assert!(err.to_string().contains("lab.json.backup"), "{err}");
            assert_eq!(fs::read(&paths.state).unwrap(), damaged, "not overwritten");
            assert_eq!(fs::read(&paths.backup).unwrap(), good_backup, "backup kept");
            assert_eq!(s.serial, serial);
        }
    }

    #[test]
    fn truncated_state_is_refused_and_names_backup() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path(), "lab");
        let mut s = sample("lab");
        save(&paths, &mut s).unwrap();
        save(&paths, &mut s).unwrap();
        let full = fs::read(&paths.state).unwrap();
        fs::write(&paths.state, &full[..full.len() / 3]).unwrap();
        let err = load(&paths, "lab").unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
        assert!(err.contains("lab.json.backup"), "{err}");
        // The damaged file was not touched.
        assert_eq!(fs::read(&paths.state).unwrap(), &full[..full.len() / 3]);
    }

    #[test]
    fn hand_edited_state_with_dangling_dependency_is_refused() {
        let mut s = sample("lab");
        s.resources
            .get_mut(&LogicalId::new("vpc"))
            .unwrap()
            .depends_on = vec![LogicalId::new("ghost")];
        let text = serde_json::to_vec(&s).unwrap();
        let err = parse(&text).unwrap_err();
        assert!(err.contains("ghost"), "{err}");
    }

    #[test]
    fn wrong_env_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path(), "lab");
        let mut s = sample("other");
        save(&paths, &mut s).unwrap();
        assert!(matches!(
            load(&paths, "lab"),
            Err(StateError::WrongEnv { .. })
        ));
    }

    #[test]
    fn save_refuses_to_overwrite_another_lineage() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path(), "lab");
        let mut a = sample("lab");
        save(&paths, &mut a).unwrap();
        let mut b = sample("lab");
        assert!(matches!(
            save(&paths, &mut b),
            Err(StateError::Lineage { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn parse_never_panics_on_mutated_state(cut in 0usize..400, byte in proptest::num::u8::ANY) {
            let mut text = serde_json::to_vec(&sample("lab")).unwrap();
            let i = cut % text.len();
            text[i] = byte;
            let _ = parse(&text);
            text.truncate(i);
            let _ = parse(&text);
        }
    }
}
