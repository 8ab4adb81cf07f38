//! No password, htpasswd line, private key or token ever lands in state, plans, or the
//! output of any command, at any verbosity (`-vv` turns on the SDK's debug logs).

use crate::harness::{files_under, mode, Fixture, Topology, World, ENV};

/// Every secret the tool made or read, as strings that must never show: the RDS password,
/// and of each file in `state/<name>/secrets/` but certificates, each line (a key's base64
/// lines, the password, the htpasswd line, a cluster token).
fn secret_strings(world: &World, db_password: &str) -> Vec<(String, String)> {
    let mut secrets = vec![("the RDS password".to_string(), db_password.to_string())];
    for file in files_under(&world.secrets_dir()) {
        if file.extension().is_some_and(|e| e == "crt") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for line in text.lines().map(str::trim) {
            if line.len() >= 16 && !line.starts_with("-----") && !line.starts_with('{') {
                secrets.push((file.display().to_string(), line.to_string()));
            }
        }
    }
    secrets
}

#[test]
fn no_password_in_state_or_any_command_output() {
    let world = World::new(&Fixture::new(Topology::K3s));
    // The apply that makes the secrets, with the SDK's debug logs on (`-vv`).
    let apply = world.run(&["-vv", "apply", "--yes"]);
    apply.ok();
    let mut outputs = vec![apply];
    for args in [
        &["output"][..],
        &["output", "datastore_endpoint"],
        &["--json", "output"],
        &["show"],
        &["--json", "show"],
        &["plan"],
        &["--json", "plan"],
        &["artifacts"],
    ] {
        for verbosity in [None, Some("-v"), Some("-vv")] {
            let args: Vec<&str> = verbosity.into_iter().chain(args.iter().copied()).collect();
            let run = world.run(&args);
            run.ok();
            outputs.push(run);
        }
    }
    let sdk_debug = |r: &crate::harness::Run| {
        r.all_output()
            .lines()
            .filter(|l| l.contains(" DEBUG ") && l.contains("try_op"))
            .count()
    };
    let very_verbose = |r: &crate::harness::Run| r.args.first().is_some_and(|a| a == "-vv");
    assert!(
        sdk_debug(&outputs[0]) > 0 && outputs.iter().all(|r| sdk_debug(r) == 0 || very_verbose(r)),
        "-vv (and only -vv) turns on the SDK's debug logs: {:?}",
        outputs
            .iter()
            .map(|r| (r.args.join(" "), sdk_debug(r)))
            .collect::<Vec<_>>()
    );

    let arn = world.aws.datastore_secret_arn();
    let db_password = world.aws.secret_password(&arn);
    assert!(
        db_password.len() >= 8,
        "moto's generated password is too short to grep: {db_password:?}"
    );
    let registry_password = std::fs::read_to_string(world.secrets_dir().join("registry-password"))
        .expect("registry password in state/<name>/secrets/")
        .trim()
        .to_string();
    assert!(registry_password.len() >= 16);

    let endpoint = outputs
        .iter()
        .find(|r| r.args == ["output", "datastore_endpoint"])
        .unwrap();
    assert!(
        endpoint.stdout.contains("mysql://"),
        "{}",
        endpoint.describe()
    );
    assert!(
        endpoint.stdout.contains(&arn),
        "the endpoint names the secret: {}",
        endpoint.describe()
    );

    let secrets = secret_strings(&world, &db_password);
    assert!(
        secrets.iter().any(|(_, s)| *s == registry_password)
            && secrets.iter().any(|(_, s)| s.contains(":$2"))
            && secrets.iter().filter(|(f, _)| f.ends_with(".key")).count() >= 2,
        "the password, the htpasswd line and the keys are checked: {:?}",
        secrets.iter().map(|(f, _)| f).collect::<Vec<_>>()
    );
    let destroy = world.run(&["-vv", "destroy", "--yes", "--skip-final-snapshot"]);
    destroy.ok();
    outputs.push(destroy);
    for run in &outputs {
        for (name, secret) in &secrets {
            assert!(
                !run.all_output().contains(secret.as_str()),
                "a secret of {name} leaked in `provision {}`",
                run.args.join(" ")
            );
        }
    }

    let state = world.path().join("state");
    let secrets = world.secrets_dir();
    let artifacts = state.join(ENV).join("artifacts");
    let mut checked = 0;
    for file in files_under(&state) {
        if file.starts_with(&secrets) {
            // Certificates are public; keys, passwords and htpasswd are not.
            if file.extension().is_some_and(|e| e == "crt") {
                continue;
            }
            assert!(
                mode(&file) & 0o077 == 0,
                "{} is readable by others",
                file.display()
            );
            continue;
        }
        let bytes = std::fs::read(&file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let has_secret = text.contains(&db_password) || text.contains(&registry_password);
        if file.starts_with(&artifacts) && mode(&file) == 0o600 {
            continue;
        }
        assert!(
            !has_secret,
            "{} holds a password (mode {:o})",
            file.display(),
            mode(&file)
        );
        checked += 1;
    }
    assert!(
        checked >= 2,
        "expected the state file and public artifacts to be checked"
    );
    let env_file = artifacts.join("k3s-install.env");
    assert_eq!(mode(&env_file), 0o600);
    assert!(std::fs::read_to_string(&env_file)
        .unwrap()
        .contains(&db_password));
}
