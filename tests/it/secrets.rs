//! No password ever lands in state, plans, or command output.

use crate::harness::{files_under, mode, Fixture, Topology, World, ENV};

#[test]
fn no_password_in_state_or_any_command_output() {
    let world = World::new(&Fixture::new(Topology::K3s));
    let mut outputs = vec![world.apply()];
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
        let run = world.run(args);
        run.ok();
        outputs.push(run);
    }

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

    for run in &outputs {
        for (name, secret) in [("RDS", &db_password), ("registry", &registry_password)] {
            assert!(
                !run.all_output().contains(secret.as_str()),
                "the {name} password leaked: {}",
                run.describe()
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
