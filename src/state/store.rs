//! Loading and atomically saving the state file.
//!
//! A save writes a temp file in the same folder, fsyncs it, copies the current file to
//! `.backup`, renames the temp file over the state file and fsyncs the folder. A crash at any
//! point leaves either the old or the new file in place, never a mix. Loading refuses a
//! damaged file (and names the backup) instead of starting from scratch.

use std::fs;
use std::io::Write;
use std::path::Path;

use super::{Paths, State, StateError, FORMAT_VERSION};

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
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".provision-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    set_mode(tmp.path(), mode)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    if let Some(backup) = backup {
        if path.exists() {
            // Copy (not rename) so the state file never disappears, even for a moment.
            let mut b = tempfile::Builder::new()
                .prefix(".provision-")
                .suffix(".bak")
                .tempfile_in(dir)?;
            set_mode(b.path(), mode)?;
            b.write_all(&fs::read(path)?)?;
            b.as_file().sync_all()?;
            b.persist(backup).map_err(|e| e.error)?;
        }
    }
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Bump the serial and save the state (mode 0600), keeping the previous file as `.backup`.
pub fn save(paths: &Paths, state: &mut State) -> Result<(), StateError> {
    // Refuse to clobber a file that someone replaced with another lineage under our lock.
    if let Ok(bytes) = fs::read(&paths.state) {
        if let Ok(on_disk) = parse(&bytes) {
            if on_disk.lineage != state.lineage {
                return Err(StateError::Lineage {
                    path: paths.state.clone(),
                    found: on_disk.lineage,
                    expected: state.lineage.clone(),
                });
            }
        }
    }
    state.serial += 1;
    let mut text = serde_json::to_vec_pretty(state).expect("state serializes");
    text.push(b'\n');
    write_atomic(&paths.state, Some(&paths.backup), &text, 0o600).map_err(|source| {
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

    #[test]
    fn crash_before_rename_leaves_old_file_intact() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path(), "lab");
        let mut s = sample("lab");
        save(&paths, &mut s).unwrap();
        let before = fs::read(&paths.state).unwrap();
        // Simulate a crash mid-write: a half-written temp file exists, rename never happened.
        let mut tmp = tempfile::Builder::new()
            .prefix(".provision-")
            .tempfile_in(dir.path())
            .unwrap();
        tmp.write_all(&before[..before.len() / 2]).unwrap();
        let _kept = tmp.keep().unwrap();
        assert_eq!(fs::read(&paths.state).unwrap(), before);
        assert_eq!(load(&paths, "lab").unwrap().unwrap(), s);
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
