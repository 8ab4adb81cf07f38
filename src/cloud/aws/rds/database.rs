//! The MySQL or PostgreSQL instance (`<env>-datastore`) K3s uses as its datastore.
//!
//! **Engine.** [`DatabaseSpec::engine`] names the RDS engine (`mysql`, `postgres`); the
//! engine's versions, default port and version numbering (MySQL majors are `8.4`,
//! PostgreSQL majors `15`) follow it. RDS cannot change an instance's engine: the engine
//! blueprint makes a change a replace, and an instance found with another engine is drift
//! that `update` refuses.
//!
//! **Master password.** K3s keeps the password it was installed with, so the password must
//! not change behind its back. RDS-managed passwords (`ManageMasterUserPassword`) rotate
//! every 7 days, so the tool generates the password into its own Secrets Manager secret
//! (the `datastore-password` resource, [`DatabaseSpec::password`]) and passes it as
//! `MasterUserPassword`. `Attrs::Database::secret_arn` names the secret that holds the
//! password the instance has, so `output`/`artifacts` read it from there. An instance whose
//! password RDS manages (built by an earlier version of the tool), or whose password came
//! from a secret that has since been re-created, is drift; `update` sets the password from
//! the current secret. The value is read only for the create/modify call that needs it and
//! never reaches a log, the state, the plan or an error message.

use std::cmp::Ordering;

use aws_sdk_rds::types::DbInstance;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::super::common::{gone, has_code, poll_until, retry_in_use, Poll};
use super::super::error::error_code;
use super::super::{sdk_error, AwsCloud};
use super::{
    check_owner, database_identifier, final_snapshot_identifier, owned_id, rds_tags,
    secret_password, tag_pairs, tags_of,
};
use crate::cloud::{CloudError, OpContext, Owned};
use crate::model::{Attrs, DatabaseSpec, Kind, LogicalId, MissingRef, Observed, Resolved};

use crate::model::DbEngine;
const STORAGE_TYPE: &str = "gp3";
const DB_NOT_FOUND: &[&str] = &["DBInstanceNotFound", "DBInstanceNotFoundFault"];
/// Statuses an instance does not leave by itself.
const FAILED_STATUSES: &[&str] = &[
    "failed",
    "incompatible-network",
    "incompatible-option-group",
    "incompatible-parameters",
    "incompatible-restore",
    "inaccessible-encryption-credentials",
    "restore-error",
    "storage-full",
];

pub async fn find(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &DatabaseSpec,
) -> Result<Option<Observed>, CloudError> {
    let identifier = database_identifier(ctx.env);
    let Some(db) = describe_database(cloud, &identifier).await? else {
        return Ok(None);
    };
    let tags = database_tags(cloud, &db).await?;
    check_owner(ctx, Kind::Database, &identifier, &tags)?;
    // An instance an interrupted run left creating is reported as it is, at once (plan
    // and destroy never sit out its creation); `update` waits for it during apply.
    Ok(Some(observe_database(ctx.resolved, spec, &db, None)))
}

pub async fn read(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &DatabaseSpec,
    identifier: &str,
) -> Result<Option<Observed>, CloudError> {
    // The secret the state says the password was last set from: a re-created secret
    // shows as drift even if a run stopped between re-creating it and updating this.
    let recorded = recorded_secret(ctx.resolved, ctx.id);
    Ok(describe_database(cloud, identifier)
        .await?
        .map(|db| observe_database(ctx.resolved, spec, &db, recorded)))
}

/// DB instances tagged `provision:env=<env>`.
pub async fn list_owned(cloud: &AwsCloud, env: &str) -> Result<Vec<Owned>, CloudError> {
    let all = match cloud.current_survey() {
        Some(survey) => {
            survey
                .lists
                .get("rds-instances", || all_databases(cloud))
                .await?
        }
        None => all_databases(cloud).await?,
    };
    let tagged = futures::future::try_join_all(
        all.iter()
            .map(|db| async move { Ok::<_, CloudError>((db, database_tags(cloud, db).await?)) }),
    )
    .await?;
    Ok(tagged
        .into_iter()
        .filter_map(|(db, tags)| {
            owned_id(&tags, env).map(|id| Owned {
                kind: Kind::Database,
                id,
                cloud_id: db.db_instance_identifier().unwrap_or_default().to_string(),
                attrs: database_attrs(db),
                owner: crate::model::FoundOwner::from_tags(
                    tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                ),
            })
        })
        .collect())
}

/// Every DB instance of the region (one page at a time).
async fn all_databases(cloud: &AwsCloud) -> Result<Vec<DbInstance>, CloudError> {
    let mut all = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = cloud
            .rds
            .describe_db_instances()
            .set_marker(marker.take())
            .send()
            .await
            .map_err(|e| sdk_error("DescribeDBInstances", e))?;
        all.extend(out.db_instances().iter().cloned());
        match out.marker() {
            Some(m) if !m.is_empty() => marker = Some(m.to_string()),
            _ => break,
        }
    }
    Ok(all)
}

pub async fn create(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &DatabaseSpec,
) -> Result<Observed, CloudError> {
    let identifier = database_identifier(ctx.env);
    let subnet_group = ctx.resolved.cloud_id(&spec.subnet_group)?;
    let security_group = ctx.resolved.cloud_id(&spec.security_group)?;
    let secret = wanted_secret(ctx.resolved, spec)?.ok_or_else(|| {
        CloudError::Refused(format!(
            "rds instance {identifier} has no password secret to take its master password from"
        ))
    })?;
    let password = secret_password(cloud, &secret).await?;
    let request = create_request(
        &cloud.rds,
        &identifier,
        spec,
        subnet_group,
        security_group,
        password,
    )
    .set_tags(Some(rds_tags(ctx)));
    match request.send().await {
        Ok(_) => {}
        // A create that timed out on our side may have gone through: adopt it if it is ours.
        Err(e)
            if has_code(
                &e,
                &["DBInstanceAlreadyExists", "DBInstanceAlreadyExistsFault"],
            ) =>
        {
            let db = describe_database(cloud, &identifier)
                .await?
                .ok_or_else(|| gone(Kind::Database, &identifier))?;
            check_owner(
                ctx,
                Kind::Database,
                &identifier,
                &database_tags(cloud, &db).await?,
            )?;
        }
        Err(e) => return Err(sdk_error("CreateDBInstance", e)),
    }
    let db = wait_available(cloud, ctx, &identifier, &DatabaseChanges::default()).await?;
    Ok(observe_database(ctx.resolved, spec, &db, None))
}

/// The `CreateDBInstance` call (without tags): the master password is the one given (from
/// our secret), never one RDS manages and rotates.
fn create_request(
    client: &aws_sdk_rds::Client,
    identifier: &str,
    spec: &DatabaseSpec,
    subnet_group: &str,
    security_group: &str,
    password: String,
) -> aws_sdk_rds::operation::create_db_instance::builders::CreateDBInstanceFluentBuilder {
    client
        .create_db_instance()
        .db_instance_identifier(identifier)
        .engine(spec.engine.as_str())
        .engine_version(&spec.engine_version)
        .db_instance_class(&spec.instance_class)
        .allocated_storage(storage_i32(spec.storage_gb))
        .storage_type(STORAGE_TYPE)
        .storage_encrypted(true)
        .publicly_accessible(false)
        .backup_retention_period(retention_i32(spec.backup_retention_days))
        .deletion_protection(true)
        .db_name(&spec.database)
        .master_username(&spec.username)
        .master_user_password(password)
        .vpc_security_group_ids(security_group)
        .db_subnet_group_name(subnet_group)
        .copy_tags_to_snapshot(true)
}

// ---------------------------------------------------------------------------------------
// Master password

/// The ARN of the secret the spec takes its master password from (`None`: the spec names
/// no secret, as in a state written before the tool generated the password).
fn wanted_secret(resolved: &Resolved, spec: &DatabaseSpec) -> Result<Option<String>, MissingRef> {
    let Some(secret) = &spec.password else {
        return Ok(None);
    };
    Ok(Some(match resolved.attrs(secret)? {
        Attrs::Secret { arn } if !arn.is_empty() => arn.clone(),
        _ => resolved.cloud_id(secret)?.to_string(),
    }))
}

/// The secret the state recorded for this instance's password, if any.
fn recorded_secret<'a>(resolved: &'a Resolved, id: &LogicalId) -> Option<&'a str> {
    match resolved.attrs(id) {
        Ok(Attrs::Database { secret_arn, .. }) if !secret_arn.is_empty() => {
            Some(secret_arn.as_str())
        }
        _ => None,
    }
}

/// Why the master password has to be set (again) from our secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PasswordChange {
    /// RDS manages the password (and rotates it): turn that off and set ours.
    ManagedByRds,
    /// The password came from a secret that has been re-created since.
    SecretReplaced,
}

/// Whether the instance's master password differs from the one in `want` (our secret's
/// ARN): RDS manages it, or `recorded` (the secret it was last set from) is another one.
fn password_change(
    db: &DbInstance,
    want: Option<&str>,
    recorded: Option<&str>,
) -> Option<PasswordChange> {
    let want = want?;
    if db.master_user_secret().is_some() {
        Some(PasswordChange::ManagedByRds)
    } else if recorded.is_some_and(|r| !r.is_empty() && r != want) {
        Some(PasswordChange::SecretReplaced)
    } else {
        None
    }
}

/// The secret that holds the password the instance has now: the one RDS manages, else the
/// one it was last set from, else ours.
fn secret_in_use(db: &DbInstance, want: Option<&str>, recorded: Option<&str>) -> String {
    db.master_user_secret()
        .and_then(|s| s.secret_arn())
        .or(recorded.filter(|r| !r.is_empty()))
        .or(want)
        .unwrap_or_default()
        .to_string()
}

/// The changes one `ModifyDBInstance` call has to make.
#[derive(Debug, Default, PartialEq, Eq)]
struct DatabaseChanges {
    instance_class: Option<String>,
    storage_gb: Option<i32>,
    /// The version to move to, and whether that crosses a major version.
    engine_version: Option<(String, bool)>,
    security_group: Option<String>,
    backup_retention: Option<i32>,
    enable_deletion_protection: bool,
    /// Why the master password is set from our secret (the value is read only when the
    /// call is made, so it never sits in this struct).
    password: Option<PasswordChange>,
}

impl DatabaseChanges {
    fn is_empty(&self) -> bool {
        *self == DatabaseChanges::default()
    }
}

/// What must change on `db` to match `spec`; refuses changes RDS cannot make in place.
fn database_changes(
    spec: &DatabaseSpec,
    security_group: &str,
    db: &DbInstance,
) -> Result<DatabaseChanges, CloudError> {
    let identifier = db.db_instance_identifier().unwrap_or_default();
    let have_engine = db.engine().unwrap_or_default();
    if !have_engine.is_empty() && have_engine != spec.engine.as_str() {
        return Err(CloudError::Refused(format!(
            "rds instance {identifier} runs {have_engine}, not {}; RDS cannot change an \
             instance's engine (a changed datastore.engine replaces the database: its data is \
             lost)",
            spec.engine.as_str()
        )));
    }
    let mut changes = DatabaseChanges::default();
    if db.db_instance_class() != Some(spec.instance_class.as_str()) {
        changes.instance_class = Some(spec.instance_class.clone());
    }
    let have_storage = db.allocated_storage().unwrap_or_default();
    let want_storage = storage_i32(spec.storage_gb);
    match want_storage.cmp(&have_storage) {
        Ordering::Greater => changes.storage_gb = Some(want_storage),
        Ordering::Less => {
            return Err(CloudError::Refused(format!(
                "rds instance {identifier} has {have_storage} GB of storage; RDS cannot shrink it to {want_storage} GB \
                 (keep storage_gb at {have_storage} or more)"
            )))
        }
        Ordering::Equal => {}
    }
    let have_version = db.engine_version().unwrap_or_default();
    match version_change(spec.engine, &spec.engine_version, have_version) {
        VersionChange::Upgrade { major } => {
            changes.engine_version = Some((spec.engine_version.clone(), major))
        }
        VersionChange::Downgrade => {
            return Err(CloudError::Refused(format!(
                "rds instance {identifier} runs {} {have_version}; RDS cannot downgrade it to {}",
                spec.engine.display_name(),
                spec.engine_version
            )))
        }
        VersionChange::None => {}
    }
    let groups = security_group_ids(db);
    if groups.len() != 1 || groups[0] != security_group {
        changes.security_group = Some(security_group.to_string());
    }
    let want_retention = retention_i32(spec.backup_retention_days);
    if db.backup_retention_period() != Some(want_retention) {
        changes.backup_retention = Some(want_retention);
    }
    changes.enable_deletion_protection = db.deletion_protection() != Some(true);
    Ok(changes)
}

pub async fn update(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &DatabaseSpec,
    current: &Observed,
) -> Result<Observed, CloudError> {
    let identifier = current.cloud_id.as_str();
    let mut db = describe_database(cloud, identifier)
        .await?
        .ok_or_else(|| gone(Kind::Database, identifier))?;
    // Still creating (adopted from an interrupted run) or busy with something of its own:
    // wait until it is usable, so its endpoint is known and RDS takes a modification.
    if let WaitState::Pending(status) = wait_state(&db, &DatabaseChanges::default()) {
        ctx.progress
            .status(&format!("{status} — waiting until it is available"));
        db = wait_available(cloud, ctx, identifier, &DatabaseChanges::default()).await?;
    }
    let security_group = ctx.resolved.cloud_id(&spec.security_group)?;
    let want_secret = wanted_secret(ctx.resolved, spec)?;
    let recorded = match &current.attrs {
        Attrs::Database { secret_arn, .. } => Some(secret_arn.as_str()),
        _ => None,
    };
    let mut changes = database_changes(spec, security_group, &db)?;
    changes.password = password_change(&db, want_secret.as_deref(), recorded);
    if changes.is_empty() {
        return Ok(observe_database(ctx.resolved, spec, &db, recorded));
    }
    let engine_version = match &changes.engine_version {
        Some((version, _)) => Some(exact_engine_version(cloud, spec.engine, version).await?),
        None => None,
    };
    let password = match (&changes.password, &want_secret) {
        (Some(_), Some(secret)) => Some(secret_password(cloud, secret).await?),
        _ => None,
    };
    let request = modify_request(&cloud.rds, identifier, &changes, engine_version, password);
    retry_in_use(
        cloud,
        ctx.progress,
        &format!("rds instance {identifier}"),
        || {
            let request = request.clone();
            async move {
                request
                    .send()
                    .await
                    .map_err(|e| sdk_error("ModifyDBInstance", e))?;
                Ok(())
            }
        },
    )
    .await?;
    let db = wait_available(cloud, ctx, identifier, &changes).await?;
    // A password just set comes from our secret; otherwise it is what it was.
    let recorded = if changes.password.is_some() {
        None
    } else {
        recorded
    };
    Ok(observe_database(ctx.resolved, spec, &db, recorded))
}

/// The `ModifyDBInstance` call that makes `changes`, at once. `password` (our secret's
/// value) is set when `changes.password` says so; taking it over from RDS also turns
/// `ManageMasterUserPassword` off.
fn modify_request(
    client: &aws_sdk_rds::Client,
    identifier: &str,
    changes: &DatabaseChanges,
    engine_version: Option<String>,
    password: Option<String>,
) -> aws_sdk_rds::operation::modify_db_instance::builders::ModifyDBInstanceFluentBuilder {
    client
        .modify_db_instance()
        .db_instance_identifier(identifier)
        .apply_immediately(true)
        .set_db_instance_class(changes.instance_class.clone())
        .set_allocated_storage(changes.storage_gb)
        .set_engine_version(engine_version)
        .set_allow_major_version_upgrade(
            changes
                .engine_version
                .as_ref()
                .and_then(|(_, major)| major.then_some(true)),
        )
        .set_vpc_security_group_ids(changes.security_group.clone().map(|sg| vec![sg]))
        .set_backup_retention_period(changes.backup_retention)
        .set_deletion_protection(changes.enable_deletion_protection.then_some(true))
        .set_manage_master_user_password(
            (changes.password == Some(PasswordChange::ManagedByRds)).then_some(false),
        )
        .set_master_user_password(password.filter(|_| changes.password.is_some()))
}

/// The full engine version RDS picks by default for `version` (`8.0` → `8.0.40`, `15` →
/// `15.8`); the version as given when it already is one, or when RDS lists none.
async fn exact_engine_version(
    cloud: &AwsCloud,
    engine: DbEngine,
    version: &str,
) -> Result<String, CloudError> {
    if version != major_version(engine, version) {
        return Ok(version.to_string());
    }
    cloud
        .memo
        .get(format!("rds-default:{}:{version}", engine.as_str()), || {
            fetch_exact_engine_version(cloud, engine, version)
        })
        .await
}

async fn fetch_exact_engine_version(
    cloud: &AwsCloud,
    engine: DbEngine,
    version: &str,
) -> Result<String, CloudError> {
    let out = match once_more(|| {
        cloud
            .rds
            .describe_db_engine_versions()
            .engine(engine.as_str())
            .engine_version(version)
            .default_only(true)
            .customize()
            .config_override(few_retries())
            .send()
    })
    .await
    {
        Ok(out) => out,
        Err(e) if unsupported_operation(&e) => return Ok(version.to_string()),
        Err(e) => return Err(sdk_error("DescribeDBEngineVersions", e)),
    };
    Ok(out
        .db_engine_versions()
        .iter()
        .filter_map(|v| v.engine_version())
        .find(|v| version_matches(version, v))
        .unwrap_or(version)
        .to_string())
}

// ---------------------------------------------------------------------------------------
// Engine version check

/// Refuse, before any change, a `datastore.engine_version` RDS does not offer. An instance
/// that already runs a version the spec accepts needs nothing from RDS's list (a pinned
/// version RDS has retired since, upgrading the instance itself, must not block a plan).
/// An endpoint that does not implement `DescribeDBEngineVersions` (moto) cannot tell:
/// nothing is checked then.
pub async fn preflight(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &DatabaseSpec,
) -> Result<(), CloudError> {
    if let Ok(identifier) = ctx.resolved.cloud_id(ctx.id) {
        if let Some(db) = describe_database(cloud, identifier).await? {
            let have = db.engine_version().unwrap_or_default();
            if version_change(spec.engine, &spec.engine_version, have) == VersionChange::None {
                return Ok(());
            }
        }
    }
    match offered_versions(cloud, spec.engine).await? {
        Some(offered) => {
            check_engine_version(spec.engine, &spec.engine_version, &offered, &cloud.region)
        }
        None => Ok(()),
    }
}

/// Every version of `engine` RDS offers for new instances in the region, or `None` when
/// the endpoint does not implement the call.
async fn offered_versions(
    cloud: &AwsCloud,
    engine: DbEngine,
) -> Result<Option<Vec<String>>, CloudError> {
    cloud
        .memo
        .get(format!("rds-versions:{}", engine.as_str()), || {
            fetch_offered_versions(cloud, engine)
        })
        .await
}

async fn fetch_offered_versions(
    cloud: &AwsCloud,
    engine: DbEngine,
) -> Result<Option<Vec<String>>, CloudError> {
    let mut versions = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = marker.take();
        let result = once_more(|| {
            cloud
                .rds
                .describe_db_engine_versions()
                .engine(engine.as_str())
                .set_marker(page.clone())
                .customize()
                .config_override(few_retries())
                .send()
        })
        .await;
        let out = match result {
            Ok(out) => out,
            Err(e) if unsupported_operation(&e) => {
                tracing::debug!(
                    "DescribeDBEngineVersions is not implemented by this endpoint (HTTP {}, \
                     error code {}); datastore.engine_version is not checked",
                    e.raw_response()
                        .map(|r| r.status().as_u16())
                        .unwrap_or_default(),
                    error_code(&e).unwrap_or("none")
                );
                return Ok(None);
            }
            Err(e) => return Err(sdk_error("DescribeDBEngineVersions", e)),
        };
        versions.extend(
            out.db_engine_versions()
                .iter()
                .filter_map(|v| v.engine_version())
                .map(str::to_string),
        );
        match out.marker() {
            Some(m) if !m.is_empty() => marker = Some(m.to_string()),
            _ => break,
        }
    }
    Ok(Some(versions))
}

/// No SDK retries (see [`once_more`]): an emulator that does not implement a call
/// answers HTTP 500, which the SDK's standard mode (8 attempts here) would otherwise retry
/// for half a minute.
fn few_retries() -> aws_sdk_rds::config::Builder {
    aws_sdk_rds::config::Builder::default()
        .retry_config(aws_sdk_rds::config::retry::RetryConfig::standard().with_max_attempts(1))
}

/// `send` without the SDK's retries, then once more 100 ms later if it failed for a
/// passing reason; not when the endpoint does not implement the call at all, which a
/// second try would only confirm.
async fn once_more<T, E, F, Fut>(send: F) -> Result<T, SdkError<E, HttpResponse>>
where
    E: ProvideErrorMetadata,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
{
    let passing = |e: &SdkError<E, HttpResponse>| match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        _ => {
            e.raw_response().is_some_and(|r| r.status().as_u16() >= 500)
                || error_code(e).is_some_and(|c| c.contains("Throttl"))
        }
    };
    match send().await {
        Err(e) if passing(&e) && !unsupported_operation(&e) => {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            send().await
        }
        other => other,
    }
}

/// Whether the endpoint does not implement the operation at all: moto answers such a
/// call with a bare HTTP 500 page (no error code), other emulators with 501 or a
/// `NotImplemented`/`InvalidAction`-like code. AWS's own 500s carry a code.
fn unsupported_operation<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    unsupported(
        error_code(err),
        err.raw_response().map(|r| r.status().as_u16()),
    )
}

fn unsupported(code: Option<&str>, status: Option<u16>) -> bool {
    const CODES: &[&str] = &[
        "NotImplemented",
        "NotImplementedException",
        "InvalidAction",
        "UnknownOperation",
        "UnknownOperationException",
        "UnsupportedOperation",
    ];
    match code {
        Some(code) => CODES.contains(&code),
        None => matches!(status, Some(500 | 501)),
    }
}

/// `Ok` when `offered` has a version `want` names (`8.0` names every 8.0.x); otherwise a
/// refusal that names the config key and what RDS offers instead.
fn check_engine_version(
    engine: DbEngine,
    want: &str,
    offered: &[String],
    region: &str,
) -> Result<(), CloudError> {
    let name = engine.display_name();
    if offered.iter().any(|v| version_matches(want, v)) {
        return Ok(());
    }
    let sorted = |mut list: Vec<String>| {
        list.sort_by(|a, b| compare_versions(a, b).then_with(|| a.cmp(b)));
        list.dedup();
        list
    };
    let major = major_version(engine, want);
    let same_major = sorted(
        offered
            .iter()
            .filter(|v| major_version(engine, v) == major)
            .cloned()
            .collect(),
    );
    let instead = if !same_major.is_empty() {
        format!(
            "for {name} {major} it offers {}: set datastore.engine_version to one of them, or \
             to \"{major}\" for RDS's default {major} version",
            same_major.join(", ")
        )
    } else {
        let majors = sorted(offered.iter().map(|v| major_version(engine, v)).collect());
        if majors.is_empty() {
            format!("it offers no {name} version at all to this account")
        } else {
            format!(
                "it offers no {name} {major} version (it offers {}): set \
                 datastore.engine_version to one of those",
                majors.join(", ")
            )
        }
    };
    Err(CloudError::Refused(format!(
        "datastore.engine_version = {want:?}: RDS in {region} does not offer {name} {want}; {instead}"
    )))
}

pub async fn delete(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    identifier: &str,
) -> Result<(), CloudError> {
    let Some(mut db) = describe_database(cloud, identifier).await? else {
        return Ok(());
    };
    if let Some(why) = delete_wait(&db) {
        // RDS answers InvalidDBInstanceState to the delete (and to lifting deletion
        // protection) until the instance has finished creating and its first backup.
        ctx.progress.status(&why);
        let status = db.db_instance_status().unwrap_or_default().to_string();
        let what = format!(
            "rds instance {identifier} to finish {status} before it can be deleted (RDS refuses \
             to delete an instance that is creating or backing up)"
        );
        let now = poll_until(
            cloud,
            ctx.progress,
            &what,
            cloud.waits.database,
            || async move {
                Ok(match describe_database(cloud, identifier).await? {
                    None => Poll::Done(None),
                    Some(db) => match delete_wait(&db) {
                        Some(why) => Poll::Pending(why),
                        None => Poll::Done(Some(db)),
                    },
                })
            },
        )
        .await?;
        match now {
            Some(now) => db = now,
            None => return Ok(()),
        }
    }
    if db.db_instance_status() != Some("deleting") {
        if db.deletion_protection() == Some(true) {
            retry_in_use(
                cloud,
                ctx.progress,
                &format!("rds instance {identifier}"),
                || async move {
                    match cloud
                        .rds
                        .modify_db_instance()
                        .db_instance_identifier(identifier)
                        .deletion_protection(false)
                        .apply_immediately(true)
                        .send()
                        .await
                    {
                        Ok(_) => Ok(()),
                        Err(e) if has_code(&e, DB_NOT_FOUND) => Ok(()),
                        Err(e) => Err(sdk_error("ModifyDBInstance", e)),
                    }
                },
            )
            .await?;
        }
        let snapshot = (!ctx.delete.skip_final_snapshot)
            .then(|| final_snapshot_identifier(ctx.env, chrono::Utc::now()));
        let snapshot = snapshot.as_deref();
        let keep_backups = ctx.delete.keep_automated_backups;
        retry_in_use(
            cloud,
            ctx.progress,
            &format!("rds instance {identifier}"),
            || async move {
                let result = cloud
                    .rds
                    .delete_db_instance()
                    .db_instance_identifier(identifier)
                    .skip_final_snapshot(snapshot.is_none())
                    .set_final_db_snapshot_identifier(snapshot.map(str::to_string))
                    // Else every cluster secret in the datastore stays restorable, and
                    // billed, for the whole retention period, unreported.
                    .delete_automated_backups(!keep_backups)
                    .send()
                    .await;
                match result {
                    Ok(_) => Ok(()),
                    Err(e) if has_code(&e, DB_NOT_FOUND) => Ok(()),
                    Err(e) => match sdk_error("DeleteDBInstance", e) {
                        CloudError::InUse { message, .. }
                            if message.contains("already being deleted") =>
                        {
                            Ok(())
                        }
                        other => Err(other),
                    },
                }
            },
        )
        .await?;
        if keep_backups {
            ctx.progress.kept(&format!(
                "the automated backups of rds instance {identifier} \
                 (--keep-automated-backups): restorable to a point in time, and billed, until \
                 their retention period ends (`aws rds describe-db-instance-automated-backups \
                 --db-instance-identifier {identifier}`; delete them with `aws rds \
                 delete-db-instance-automated-backup --dbi-resource-id …`)"
            ));
        }
        if let Some(snapshot) = snapshot {
            ctx.progress.kept(&format!(
                "final snapshot {snapshot} of rds instance {identifier} (restore it with \
                 `aws rds restore-db-instance-from-db-snapshot --db-snapshot-identifier \
                 {snapshot} …`; delete it with `aws rds delete-db-snapshot \
                 --db-snapshot-identifier {snapshot}`)"
            ));
        }
    }
    let what = format!("rds instance {identifier} to be deleted");
    poll_until(
        cloud,
        ctx.progress,
        &what,
        cloud.waits.database,
        || async move {
            Ok(match describe_database(cloud, identifier).await? {
                None => Poll::Done(()),
                Some(db) => {
                    Poll::Pending(db.db_instance_status().unwrap_or("deleting").to_string())
                }
            })
        },
    )
    .await
}

/// Statuses that end by themselves and in which RDS refuses `DeleteDBInstance` ("a final
/// snapshot cannot be taken") and the `ModifyDBInstance` that lifts deletion protection.
const DELETE_WAITS_FOR: &[&str] = &["creating", "backing-up"];

/// The progress line while a delete has to wait for the instance (`None`: delete now).
fn delete_wait(db: &DbInstance) -> Option<String> {
    let status = db.db_instance_status().unwrap_or_default();
    DELETE_WAITS_FOR
        .contains(&status)
        .then(|| format!("{status} — waiting before delete"))
}

/// Poll until the instance is usable (see [`wait_state`]) with none of the modifications
/// in `ours` still pending.
async fn wait_available(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    identifier: &str,
    ours: &DatabaseChanges,
) -> Result<DbInstance, CloudError> {
    let what = format!("rds instance {identifier} to become available");
    poll_until(
        cloud,
        ctx.progress,
        &what,
        cloud.waits.database,
        || async move {
            let Some(db) = describe_database(cloud, identifier).await? else {
                return Ok(Poll::Pending("not visible yet".to_string()));
            };
            match wait_state(&db, ours) {
                WaitState::Ready => Ok(Poll::Done(db)),
                WaitState::Pending(status) => Ok(Poll::Pending(status)),
                WaitState::Failed(status) => Err(CloudError::api(
                    "DescribeDBInstances",
                    "InstanceFailed",
                    format!("rds instance {identifier} is in status {status}"),
                )),
            }
        },
    )
    .await
}

/// Statuses in which the instance serves connections and takes no more waiting:
/// `storage-optimization` follows a storage change for hours and is fully usable.
const USABLE_STATUSES: &[&str] = &["available", "storage-optimization"];

/// Where a wait for the instance stands.
#[derive(Debug, PartialEq, Eq)]
enum WaitState {
    Ready,
    /// Not yet: the status to show. `backing-up`, `modifying`, `maintenance`,
    /// `configuring-*`, `upgrading` and the like end by themselves.
    Pending(String),
    /// A status the instance does not leave by itself.
    Failed(String),
}

fn wait_state(db: &DbInstance, ours: &DatabaseChanges) -> WaitState {
    let status = db.db_instance_status().unwrap_or("unknown");
    if FAILED_STATUSES.contains(&status) {
        WaitState::Failed(status.to_string())
    } else if !USABLE_STATUSES.contains(&status) {
        WaitState::Pending(status.to_string())
    } else if has_pending_changes(db, ours) {
        WaitState::Pending(format!("{status}, modification pending"))
    } else {
        WaitState::Ready
    }
}

/// Whether a modification in `ours` is still pending. Changes someone else scheduled for
/// the maintenance window stay pending for days and are not ours to wait for.
fn has_pending_changes(db: &DbInstance, ours: &DatabaseChanges) -> bool {
    db.pending_modified_values().is_some_and(|p| {
        (ours.instance_class.is_some() && p.db_instance_class().is_some())
            || (ours.storage_gb.is_some()
                && (p.allocated_storage().is_some() || p.storage_type().is_some()))
            || (ours.engine_version.is_some() && p.engine_version().is_some())
            || (ours.backup_retention.is_some() && p.backup_retention_period().is_some())
            || (ours.password.is_some() && p.master_user_password().is_some())
    })
}

async fn describe_database(
    cloud: &AwsCloud,
    identifier: &str,
) -> Result<Option<DbInstance>, CloudError> {
    // While `plan` surveys, from the one list of the region's instances.
    if let Some(survey) = cloud.current_survey() {
        let all = survey
            .lists
            .get("rds-instances", || all_databases(cloud))
            .await?;
        if let Some(db) = all
            .iter()
            .find(|d| d.db_instance_identifier() == Some(identifier))
        {
            return Ok(Some(db.clone()));
        }
    }
    match cloud
        .rds
        .describe_db_instances()
        .db_instance_identifier(identifier)
        .send()
        .await
    {
        Ok(out) => Ok(out.db_instances().first().cloned()),
        Err(e) if has_code(&e, DB_NOT_FOUND) => Ok(None),
        Err(e) => Err(sdk_error("DescribeDBInstances", e)),
    }
}

fn database_attrs(db: &DbInstance) -> Attrs {
    let endpoint = db.endpoint();
    Attrs::Database {
        address: endpoint
            .and_then(|e| e.address())
            .unwrap_or_default()
            .to_string(),
        port: endpoint
            .and_then(|e| e.port())
            .or(db.db_instance_port().filter(|p| *p > 0))
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(match db.engine() {
                Some("postgres") => DbEngine::Postgres.port(),
                _ => DbEngine::Mysql.port(),
            }),
        secret_arn: secret_in_use(db, None, None),
        status: db.db_instance_status().unwrap_or_default().to_string(),
    }
}

/// The instance as observed: `recorded` is the secret the state says its password was last
/// set from (`None` when unknown, or when it was just set from our secret).
fn observe_database(
    resolved: &Resolved,
    spec: &DatabaseSpec,
    db: &DbInstance,
    recorded: Option<&str>,
) -> Observed {
    let want = wanted_secret(resolved, spec).ok().flatten();
    let mut attrs = database_attrs(db);
    if let Attrs::Database { secret_arn, .. } = &mut attrs {
        *secret_arn = secret_in_use(db, want.as_deref(), recorded);
    }
    let mut drift = database_drift(resolved, spec, db, recorded);
    drift.extend(not_ready(db));
    Observed {
        cloud_id: db.db_instance_identifier().unwrap_or_default().to_string(),
        attrs,
        drift,
        fixed: database_fixed(spec, db),
    }
}

/// What RDS cannot change on a live instance: the engine, a version older than the live
/// one (a minor upgrade RDS made itself, or one made by hand), encryption at rest. Only a
/// new database would match the spec; the line says how to keep this one instead.
fn database_fixed(spec: &DatabaseSpec, db: &DbInstance) -> Vec<String> {
    let mut fixed = Vec::new();
    let engine = db.engine().unwrap_or_default();
    if !engine.is_empty() && engine != spec.engine.as_str() {
        fixed.push(format!(
            "engine is {engine}, want {} (RDS cannot change it: a new database is needed)",
            spec.engine.as_str()
        ));
    }
    let version = db.engine_version().unwrap_or_default();
    if let VersionChange::Downgrade = version_change(spec.engine, &spec.engine_version, version) {
        fixed.push(format!(
            "engine version is {version}, want {} (RDS cannot downgrade; set \
             database.engine_version = \"{version}\" to keep this database)",
            spec.engine_version
        ));
    }
    if db.storage_encrypted() == Some(false) {
        fixed.push("storage is not encrypted (RDS cannot encrypt a live instance)".to_string());
    }
    fixed
}

/// The line for an instance that is still being created. Nothing about it differs from
/// the spec, but its endpoint is not known yet: the line makes apply run `update`, which
/// waits until it is available and records the endpoint (an adoption without it would
/// keep an empty address in the state).
fn not_ready(db: &DbInstance) -> Option<String> {
    let status = db.db_instance_status().unwrap_or("unknown");
    let no_endpoint = db.endpoint().and_then(|e| e.address()).is_none();
    (status == "creating" || (no_endpoint && !FAILED_STATUSES.contains(&status)))
        .then(|| format!("still {status} (no endpoint yet): apply waits until it is available"))
}

fn database_drift(
    resolved: &Resolved,
    spec: &DatabaseSpec,
    db: &DbInstance,
    recorded: Option<&str>,
) -> Vec<String> {
    let mut drift = Vec::new();
    let class = db.db_instance_class().unwrap_or_default();
    if class != spec.instance_class {
        drift.push(format!(
            "instance class is {class}, want {}",
            spec.instance_class
        ));
    }
    let storage = db.allocated_storage().unwrap_or_default();
    if storage != storage_i32(spec.storage_gb) {
        drift.push(format!(
            "storage is {storage} GB, want {} GB",
            spec.storage_gb
        ));
    }
    let version = db.engine_version().unwrap_or_default();
    if let VersionChange::Upgrade { .. } =
        version_change(spec.engine, &spec.engine_version, version)
    {
        drift.push(format!(
            "engine version is {version}, want {}",
            spec.engine_version
        ));
    }
    if db.deletion_protection() != Some(true) {
        drift.push("deletion protection is off".to_string());
    }
    if db.publicly_accessible() == Some(true) {
        drift.push("publicly accessible".to_string());
    }
    let want = wanted_secret(resolved, spec).ok().flatten();
    match password_change(db, want.as_deref(), recorded) {
        Some(PasswordChange::ManagedByRds) => drift.push(
            "master password is managed by RDS and rotates every 7 days (K3s keeps the \
             password it was installed with); apply sets it from the tool's own secret"
                .to_string(),
        ),
        Some(PasswordChange::SecretReplaced) => drift.push(format!(
            "master password was set from secret {}, which is no longer the `{}` secret; \
             apply sets it from the current one",
            recorded.unwrap_or_default(),
            spec.password
                .as_ref()
                .map(LogicalId::as_str)
                .unwrap_or_default()
        )),
        None => {}
    }
    let retention = db.backup_retention_period().unwrap_or_default();
    if retention != retention_i32(spec.backup_retention_days) {
        drift.push(format!(
            "backup retention is {retention} days, want {}",
            spec.backup_retention_days
        ));
    }
    if let Ok(want) = resolved.cloud_id(&spec.security_group) {
        let have = security_group_ids(db);
        if have.len() != 1 || have[0] != want {
            drift.push(format!(
                "security groups are [{}], want [{want}]",
                have.join(", ")
            ));
        }
    }
    drift
}

fn security_group_ids(db: &DbInstance) -> Vec<String> {
    db.vpc_security_groups()
        .iter()
        .filter_map(|g| g.vpc_security_group_id())
        .map(str::to_string)
        .collect()
}

/// `8.0` matches `8.0` and `8.0.39`, not `8.0.3` vs `8.0.39`.
fn version_matches(want: &str, have: &str) -> bool {
    have == want
        || have
            .strip_prefix(want)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// What it takes to go from the running version `have` to the wanted `want`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VersionChange {
    /// `have` satisfies `want`: the same version, any minor of a major pin (`8.0` and
    /// `8.0.40`), or a newer minor RDS upgraded to by itself (`8.0.39` pinned, `8.0.40`
    /// running; RDS cannot go back, and the pin only said where to start).
    None,
    /// `want` is newer: a minor upgrade, or a major one (`8.0` → `8.4`).
    Upgrade { major: bool },
    /// `want` is an older major than what runs: RDS cannot do that.
    Downgrade,
}

fn version_change(engine: DbEngine, want: &str, have: &str) -> VersionChange {
    match compare_versions(&major_version(engine, want), &major_version(engine, have)) {
        Ordering::Greater => VersionChange::Upgrade { major: true },
        Ordering::Less => VersionChange::Downgrade,
        Ordering::Equal => match compare_versions(want, have) {
            Ordering::Greater => VersionChange::Upgrade { major: false },
            Ordering::Equal | Ordering::Less => VersionChange::None,
        },
    }
}

/// The major version: for MySQL its first two components (`8.0.39` → `8.0`), for
/// PostgreSQL (10 and later) its first (`15.8` → `15`).
fn major_version(engine: DbEngine, version: &str) -> String {
    let parts = match engine {
        DbEngine::Mysql => 2,
        DbEngine::Postgres => 1,
    };
    version.split('.').take(parts).collect::<Vec<_>>().join(".")
}

/// Compare the wanted version with the running one on the components the wanted one
/// names: `8.0` vs `8.0.39` is equal, `8.4` vs `8.0.39` greater, `5.7` vs `8.0.39` less.
fn compare_versions(want: &str, have: &str) -> Ordering {
    let mut have_parts = have.split('.');
    for w in want.split('.') {
        let h = have_parts.next().unwrap_or("0");
        let ordering = match (w.parse::<u64>(), h.parse::<u64>()) {
            (Ok(w), Ok(h)) => w.cmp(&h),
            _ => w.cmp(h),
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    Ordering::Equal
}

fn storage_i32(gb: u32) -> i32 {
    i32::try_from(gb).unwrap_or(i32::MAX)
}

fn retention_i32(days: u32) -> i32 {
    i32::try_from(days).unwrap_or(i32::MAX)
}

/// The instance's tags: the `TagList` of the describe call, or a tag lookup when it is empty.
async fn database_tags(
    cloud: &AwsCloud,
    db: &DbInstance,
) -> Result<Vec<(String, String)>, CloudError> {
    if !db.tag_list().is_empty() {
        return Ok(tag_pairs(db.tag_list()));
    }
    match db.db_instance_arn() {
        Some(arn) => tags_of(cloud, arn).await,
        None => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{
        db_xml, describe, not_found, secret, Progress, Reply, Script, ENDPOINT,
    };
    use super::*;
    use crate::cloud::DeleteOptions;
    use aws_sdk_rds::types::{MasterUserSecret, VpcSecurityGroupMembership};

    /// An operation context for `datastore` of env `lab`.
    fn op_ctx<'a>(
        id: &'a LogicalId,
        resolved: &'a Resolved,
        progress: &'a Progress,
        delete: &'a DeleteOptions,
    ) -> OpContext<'a> {
        static OWNER: std::sync::OnceLock<crate::model::Owner> = std::sync::OnceLock::new();
        OpContext {
            env: "lab",
            owner: OWNER.get_or_init(Default::default),
            id,
            token: "",
            resolved,
            progress,
            delete,
        }
    }

    /// The pieces a context borrows.
    fn parts() -> (LogicalId, Resolved, Progress, DeleteOptions) {
        (
            LogicalId::new("datastore"),
            resolved(),
            Progress::default(),
            DeleteOptions::default(),
        )
    }

    fn unexpected(call: &super::super::testing::Call) -> Reply {
        Reply::error(
            400,
            "UnexpectedCall",
            &format!("no answer for {}", call.action),
        )
    }

    fn describes(earlier: &[super::super::testing::Call]) -> usize {
        earlier
            .iter()
            .filter(|c| c.action == "DescribeDBInstances")
            .count()
    }

    #[tokio::test]
    async fn find_reports_a_creating_instance_at_once() {
        let script = Script::new(|call, _| match call.action.as_str() {
            "DescribeDBInstances" => describe(&db_xml("creating", "8.0.39", "")),
            _ => unexpected(call),
        });
        let cloud = script.cloud(Duration::from_secs(2));
        let (id, resolved, progress, delete) = parts();
        let ctx = op_ctx(&id, &resolved, &progress, &delete);
        let found = tokio::time::timeout(Duration::from_secs(1), find(&cloud, &ctx, &spec()))
            .await
            .expect("find must not wait for the instance to finish creating")
            .unwrap()
            .expect("found");
        match &found.attrs {
            Attrs::Database {
                status, address, ..
            } => {
                assert_eq!(status, "creating");
                assert_eq!(address, "");
            }
            other => panic!("{other:?}"),
        }
        // Nothing differs from the spec: the one line only makes apply wait for it.
        assert_eq!(
            found.drift,
            vec!["still creating (no endpoint yet): apply waits until it is available"]
        );
        assert_eq!(script.actions(), vec!["DescribeDBInstances"]);
    }

    #[tokio::test]
    async fn update_of_an_adopted_creating_instance_waits_and_records_the_endpoint() {
        let script = Script::new(|call, earlier| match call.action.as_str() {
            "DescribeDBInstances" if describes(earlier) < 3 => {
                describe(&db_xml("creating", "8.0.39", ""))
            }
            "DescribeDBInstances" => describe(&db_xml("available", "8.0.39", ENDPOINT)),
            _ => unexpected(call),
        });
        let cloud = script.cloud(Duration::from_secs(5));
        let (id, resolved, progress, delete) = parts();
        let ctx = op_ctx(&id, &resolved, &progress, &delete);
        let adopted = find(&cloud, &ctx, &spec()).await.unwrap().unwrap();
        let updated = update(&cloud, &ctx, &spec(), &adopted).await.unwrap();
        match &updated.attrs {
            Attrs::Database {
                status,
                address,
                secret_arn,
                ..
            } => {
                assert_eq!(status, "available");
                assert_eq!(address, "lab-datastore.abc.us-east-1.rds.amazonaws.com");
                assert_eq!(secret_arn, OUR_SECRET);
            }
            other => panic!("{other:?}"),
        }
        assert!(updated.drift.is_empty(), "{:?}", updated.drift);
        assert!(
            !script.actions().iter().any(|a| a == "ModifyDBInstance"),
            "{:?}",
            script.actions()
        );
        assert_eq!(
            progress.lines()[0],
            "creating — waiting until it is available"
        );
    }

    /// RDS as it behaves around a delete: `creating` for the first `creating` describes,
    /// then available; modify and delete are refused while creating.
    fn deletable_after(creating: usize) -> Script {
        Script::new(move |call, earlier| {
            let deleted = earlier.iter().any(|c| c.action == "DeleteDBInstance");
            let still_creating = describes(earlier) < creating;
            match call.action.as_str() {
                "DescribeDBInstances" if deleted => not_found(),
                "DescribeDBInstances" if still_creating => {
                    describe(&db_xml("creating", "8.0.39", ""))
                }
                "DescribeDBInstances" => describe(&db_xml("available", "8.0.39", ENDPOINT)),
                "ModifyDBInstance" | "DeleteDBInstance" if still_creating => Reply::error(
                    400,
                    "InvalidDBInstanceState",
                    "Instance lab-datastore is currently creating - a final snapshot cannot be taken.",
                ),
                "ModifyDBInstance" => Reply::ok(
                    "ModifyDBInstance",
                    &db_xml("available", "8.0.39", ENDPOINT),
                ),
                "DeleteDBInstance" => Reply::ok(
                    "DeleteDBInstance",
                    &db_xml("deleting", "8.0.39", ENDPOINT),
                ),
                _ => unexpected(call),
            }
        })
    }

    #[tokio::test]
    async fn destroy_waits_for_a_creating_instance_and_says_so() {
        let script = deletable_after(3);
        let cloud = script.cloud(Duration::from_secs(5));
        let (id, resolved, progress, delete) = parts();
        let ctx = op_ctx(&id, &resolved, &progress, &delete);
        super::delete(&cloud, &ctx, "lab-datastore").await.unwrap();
        assert_eq!(
            script.actions(),
            vec![
                "DescribeDBInstances",
                "DescribeDBInstances",
                "DescribeDBInstances",
                // Available now: lift deletion protection, delete, see it gone.
                "DescribeDBInstances",
                "ModifyDBInstance",
                "DeleteDBInstance",
                "DescribeDBInstances",
            ]
        );
        let lines = progress.lines();
        assert_eq!(lines[0], "creating — waiting before delete");
        // The cloud's status alone: the reporter adds the time.
        assert_eq!(lines[1], "creating — waiting before delete", "{lines:?}");
        // The automated backups go with the instance unless kept.
        let delete = script
            .calls()
            .into_iter()
            .find(|c| c.action == "DeleteDBInstance")
            .unwrap();
        assert!(
            delete.has_param("DeleteAutomatedBackups", "true"),
            "{}",
            delete.body
        );
    }

    #[tokio::test]
    async fn destroy_keeps_the_automated_backups_only_when_asked_and_says_so() {
        let script = deletable_after(0);
        let cloud = script.cloud(Duration::from_secs(5));
        let (id, resolved, progress, _) = parts();
        let delete = DeleteOptions {
            keep_automated_backups: true,
            ..DeleteOptions::default()
        };
        let ctx = op_ctx(&id, &resolved, &progress, &delete);
        super::delete(&cloud, &ctx, "lab-datastore").await.unwrap();
        let call = script
            .calls()
            .into_iter()
            .find(|c| c.action == "DeleteDBInstance")
            .unwrap();
        assert!(
            call.has_param("DeleteAutomatedBackups", "false"),
            "{}",
            call.body
        );
        let kept = progress.kept_lines();
        assert!(
            kept.iter().any(
                |k| k.contains("automated backups of rds instance lab-datastore")
                    && k.contains("--keep-automated-backups")
            ),
            "{kept:?}"
        );
    }

    #[tokio::test]
    async fn destroy_gives_up_on_an_instance_that_stays_creating_and_says_why() {
        let script = deletable_after(usize::MAX);
        let cloud = script.cloud(Duration::from_millis(60));
        let (id, resolved, progress, delete) = parts();
        let ctx = op_ctx(&id, &resolved, &progress, &delete);
        let err = super::delete(&cloud, &ctx, "lab-datastore")
            .await
            .unwrap_err();
        match &err {
            CloudError::Timeout { what, .. } => {
                assert!(
                    what.contains("to finish creating before it can be deleted"),
                    "{what}"
                );
                assert!(what.contains("RDS refuses"), "{what}");
            }
            other => panic!("{other:?}"),
        }
        assert!(script.actions().iter().all(|a| a == "DescribeDBInstances"));
    }

    #[tokio::test]
    async fn create_takes_the_password_from_our_secret() {
        let script = Script::new(|call, _| match call.action.as_str() {
            "GetSecretValue" => secret(OUR_SECRET, PASSWORD),
            "CreateDBInstance" => Reply::ok("CreateDBInstance", &db_xml("creating", "8.0.39", "")),
            "DescribeDBInstances" => describe(&db_xml("available", "8.0.39", ENDPOINT)),
            _ => unexpected(call),
        });
        let cloud = script.cloud(Duration::from_secs(5));
        let (id, mut resolved, progress, delete) = parts();
        resolved.entries.insert(
            "db-subnets".into(),
            Observed::new("lab-db-subnets", Attrs::None),
        );
        let ctx = op_ctx(&id, &resolved, &progress, &delete);
        let created = create(&cloud, &ctx, &spec()).await.unwrap();
        let calls = script.calls();
        assert_eq!(calls[0].action, "GetSecretValue");
        assert!(calls[0].body.contains(OUR_SECRET), "{}", calls[0].body);
        let request = calls
            .iter()
            .find(|c| c.action == "CreateDBInstance")
            .unwrap();
        assert!(request.has_param("MasterUserPassword", PASSWORD));
        assert!(!request.names_param("ManageMasterUserPassword"));
        match &created.attrs {
            Attrs::Database { secret_arn, .. } => assert_eq!(secret_arn, OUR_SECRET),
            other => panic!("{other:?}"),
        }
        assert!(!format!("{created:?}").contains(PASSWORD));
    }

    #[tokio::test]
    async fn a_postgres_datastore_is_created_with_its_engine() {
        let script = Script::new(|call, _| match call.action.as_str() {
            "GetSecretValue" => secret(OUR_SECRET, PASSWORD),
            "CreateDBInstance" => Reply::ok("CreateDBInstance", &db_xml("creating", "15.8", "")),
            "DescribeDBInstances" => describe(&db_xml("available", "15.8", ENDPOINT)),
            _ => unexpected(call),
        });
        let cloud = script.cloud(Duration::from_secs(5));
        let (id, mut resolved, progress, delete) = parts();
        resolved.entries.insert(
            "db-subnets".into(),
            Observed::new("lab-db-subnets", Attrs::None),
        );
        let ctx = op_ctx(&id, &resolved, &progress, &delete);
        let spec = DatabaseSpec {
            engine: DbEngine::Postgres,
            engine_version: "15".into(),
            ..spec()
        };
        create(&cloud, &ctx, &spec).await.unwrap();
        let calls = script.calls();
        let request = calls
            .iter()
            .find(|c| c.action == "CreateDBInstance")
            .unwrap();
        assert!(request.has_param("Engine", "postgres"), "{}", request.body);
        assert!(request.has_param("EngineVersion", "15"), "{}", request.body);
    }

    #[test]
    fn postgres_versions_compare_on_their_major() {
        use VersionChange::*;
        for (want, have, change) in [
            ("15", "15.8", None),
            ("15.4", "15.8", None),
            ("15.9", "15.8", Upgrade { major: false }),
            ("16", "15.8", Upgrade { major: true }),
            ("14", "15.8", Downgrade),
        ] {
            assert_eq!(
                version_change(DbEngine::Postgres, want, have),
                change,
                "{want} vs {have}"
            );
        }
        let offered: Vec<String> = ["14.12", "15.7", "15.8", "16.4"].map(String::from).to_vec();
        assert!(check_engine_version(DbEngine::Postgres, "15", &offered, "us-east-1").is_ok());
        let Err(CloudError::Refused(message)) =
            check_engine_version(DbEngine::Postgres, "15.2", &offered, "us-east-1")
        else {
            panic!()
        };
        assert!(
            message
                .contains("does not offer PostgreSQL 15.2; for PostgreSQL 15 it offers 15.7, 15.8"),
            "{message}"
        );
    }

    #[test]
    fn an_instance_of_another_engine_is_fixed_and_update_refuses_it() {
        let spec = DatabaseSpec {
            engine: DbEngine::Postgres,
            engine_version: "15".into(),
            ..spec()
        };
        let db = instance_builder().engine("mysql").build();
        // Only a new database changes the engine: fixed (planned as a replacement), not
        // drift an update would try.
        let fixed = database_fixed(&spec, &db);
        assert!(
            fixed
                .iter()
                .any(|d| d.starts_with("engine is mysql, want postgres")),
            "{fixed:?}"
        );
        let drift = database_drift(&resolved(), &spec, &db, None);
        assert!(
            !drift.iter().any(|d| d.starts_with("engine is")),
            "{drift:?}"
        );
        assert!(matches!(
            database_changes(&spec, "sg-1", &db),
            Err(CloudError::Refused(m)) if m.contains("cannot change an instance's engine")
        ));
        // The endpoint port defaults by engine when RDS does not say.
        let db = instance_builder()
            .engine("postgres")
            .endpoint(
                aws_sdk_rds::types::Endpoint::builder()
                    .address("lab-datastore.abc.us-east-1.rds.amazonaws.com")
                    .build(),
            )
            .build();
        assert!(matches!(
            database_attrs(&db),
            Attrs::Database { port: 5432, .. }
        ));
    }

    #[tokio::test]
    async fn update_takes_an_rds_managed_password_over() {
        let managed = format!(
            "{ENDPOINT}<MasterUserSecret><SecretArn>{RDS_SECRET}</SecretArn>\
             <SecretStatus>active</SecretStatus></MasterUserSecret>"
        );
        let script = Script::new(move |call, earlier| {
            let modified = earlier.iter().any(|c| c.action == "ModifyDBInstance");
            match call.action.as_str() {
                "DescribeDBInstances" if modified => {
                    describe(&db_xml("available", "8.0.39", ENDPOINT))
                }
                "DescribeDBInstances" => describe(&db_xml("available", "8.0.39", &managed)),
                "GetSecretValue" => secret(OUR_SECRET, PASSWORD),
                "ModifyDBInstance" => {
                    Reply::ok("ModifyDBInstance", &db_xml("available", "8.0.39", ENDPOINT))
                }
                _ => unexpected(call),
            }
        });
        let cloud = script.cloud(Duration::from_secs(5));
        let (id, resolved, progress, delete) = parts();
        let ctx = op_ctx(&id, &resolved, &progress, &delete);
        let current = read(&cloud, &ctx, &spec(), "lab-datastore")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(current.drift.len(), 1, "{:?}", current.drift);
        let updated = update(&cloud, &ctx, &spec(), &current).await.unwrap();
        let calls = script.calls();
        let modify = calls
            .iter()
            .find(|c| c.action == "ModifyDBInstance")
            .unwrap();
        assert!(modify.has_param("ManageMasterUserPassword", "false"));
        assert!(modify.has_param("MasterUserPassword", PASSWORD));
        assert!(modify.has_param("ApplyImmediately", "true"));
        assert!(updated.drift.is_empty(), "{:?}", updated.drift);
        match &updated.attrs {
            Attrs::Database { secret_arn, .. } => assert_eq!(secret_arn, OUR_SECRET),
            other => panic!("{other:?}"),
        }
        assert!(!format!("{updated:?}").contains(PASSWORD));
    }

    fn offered() -> Vec<String> {
        ["5.7.44", "8.0.36", "8.0.40", "8.0.39", "8.4.3", "8.0.41"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn engine_versions_rds_offers_pass() {
        for want in ["8.0", "8.0.40", "8.4", "8.4.3", "5.7", "8"] {
            assert!(
                check_engine_version(DbEngine::Mysql, want, &offered(), "us-east-1").is_ok(),
                "{want}"
            );
        }
    }

    #[test]
    fn an_engine_version_rds_does_not_offer_is_refused_naming_the_key_and_the_choices() {
        let Err(CloudError::Refused(message)) =
            check_engine_version(DbEngine::Mysql, "8.0.11", &offered(), "us-east-1")
        else {
            panic!("8.0.11 must be refused");
        };
        assert_eq!(
            message,
            "datastore.engine_version = \"8.0.11\": RDS in us-east-1 does not offer MySQL \
             8.0.11; for MySQL 8.0 it offers 8.0.36, 8.0.39, 8.0.40, 8.0.41: set \
             datastore.engine_version to one of them, or to \"8.0\" for RDS's default 8.0 \
             version"
        );
        let Err(CloudError::Refused(message)) =
            check_engine_version(DbEngine::Mysql, "5.6", &offered(), "us-east-1")
        else {
            panic!("5.6 must be refused");
        };
        assert!(
            message.starts_with("datastore.engine_version = \"5.6\""),
            "{message}"
        );
        assert!(message.contains("it offers 5.7, 8.0, 8.4"), "{message}");
        // A real answer with nothing in it is a refusal too.
        let Err(CloudError::Refused(message)) =
            check_engine_version(DbEngine::Mysql, "8.0", &[], "us-east-1")
        else {
            panic!("an empty list must be refused");
        };
        assert!(message.contains("datastore.engine_version"), "{message}");
    }

    #[test]
    fn only_a_missing_operation_counts_as_cannot_check() {
        assert!(unsupported(None, Some(500)), "moto's bare 500 page");
        assert!(unsupported(None, Some(501)));
        assert!(unsupported(Some("NotImplemented"), Some(501)));
        assert!(unsupported(Some("InvalidAction"), Some(400)));
        assert!(
            !unsupported(Some("InternalFailure"), Some(500)),
            "AWS's own 500"
        );
        assert!(!unsupported(Some("AccessDenied"), Some(403)));
        assert!(!unsupported(Some("Throttling"), Some(400)));
        assert!(!unsupported(None, Some(403)));
    }

    /// `DescribeDBEngineVersions` with the versions of `offered()`, in two pages.
    fn engine_versions(call: &super::super::testing::Call) -> Reply {
        let page = |versions: &[&str], marker: &str| {
            let items: String = versions
                .iter()
                .map(|v| {
                    format!(
                        "<DBEngineVersion><Engine>mysql</Engine>\
                         <EngineVersion>{v}</EngineVersion></DBEngineVersion>"
                    )
                })
                .collect();
            Reply::ok(
                "DescribeDBEngineVersions",
                &format!("<DBEngineVersions>{items}</DBEngineVersions>{marker}"),
            )
        };
        if call.has_param("Marker", "page-2") {
            page(&["8.4.3", "8.0.41"], "")
        } else {
            page(
                &["5.7.44", "8.0.36", "8.0.40", "8.0.39"],
                "<Marker>page-2</Marker>",
            )
        }
    }

    fn database_spec(version: &str) -> crate::model::Spec {
        crate::model::Spec::Database(DatabaseSpec {
            engine_version: version.into(),
            ..spec()
        })
    }

    #[tokio::test]
    async fn preflight_checks_the_version_against_every_page_rds_offers() {
        let script = Script::new(|call, _| match call.action.as_str() {
            "DescribeDBEngineVersions" => engine_versions(call),
            _ => unexpected(call),
        });
        let cloud = script.cloud(Duration::from_secs(1));
        let (id, _, progress, delete) = parts();
        // A new environment: the state knows no instance.
        let fresh = Resolved::default();
        let ctx = op_ctx(&id, &fresh, &progress, &delete);
        super::super::preflight(&cloud, &ctx, &database_spec("8.0.41"))
            .await
            .unwrap();
        let err = super::super::preflight(&cloud, &ctx, &database_spec("8.0.11"))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("8.0.36, 8.0.39, 8.0.40, 8.0.41"),
            "{err}"
        );
        assert!(script.calls()[0].has_param("Engine", "mysql"));
    }

    #[tokio::test]
    async fn preflight_cannot_check_against_an_emulator_without_the_call() {
        // moto answers an action it does not implement with a bare HTTP 500 page.
        let script = Script::new(|call, _| match call.action.as_str() {
            "DescribeDBEngineVersions" => Reply(
                500,
                "text/html",
                "<!doctype html><title>500 Internal Server Error</title>".into(),
            ),
            _ => unexpected(call),
        });
        let cloud = script.cloud(Duration::from_secs(1));
        let (id, _, progress, delete) = parts();
        let fresh = Resolved::default();
        let ctx = op_ctx(&id, &fresh, &progress, &delete);
        let started = std::time::Instant::now();
        super::super::preflight(&cloud, &ctx, &database_spec("8.0"))
            .await
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(2));
        // A refusal that is not about a missing operation still fails the plan.
        let script = Script::new(|_, _| {
            Reply::error(
                403,
                "AccessDenied",
                "not authorized to DescribeDBEngineVersions",
            )
        });
        let cloud = script.cloud(Duration::from_secs(1));
        let err = super::super::preflight(&cloud, &ctx, &database_spec("8.0"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("AccessDenied"), "{err}");
    }

    #[tokio::test]
    async fn preflight_lets_a_running_instance_keep_a_pin_rds_has_retired() {
        // 8.0.39 is no longer offered; RDS upgraded the instance to 8.0.40 by itself.
        let script = Script::new(|call, _| match call.action.as_str() {
            "DescribeDBInstances" => describe(&db_xml("available", "8.0.40", ENDPOINT)),
            "DescribeDBEngineVersions" => engine_versions(call),
            _ => unexpected(call),
        });
        let cloud = script.cloud(Duration::from_secs(1));
        let (id, mut resolved, progress, delete) = parts();
        resolved.entries.insert(
            "datastore".into(),
            Observed::new("lab-datastore", Attrs::None),
        );
        let ctx = op_ctx(&id, &resolved, &progress, &delete);
        super::super::preflight(&cloud, &ctx, &database_spec("8.0.39"))
            .await
            .unwrap();
        assert_eq!(script.actions(), vec!["DescribeDBInstances"]);
        // An upgrade of that instance to a version RDS does not offer is refused.
        let err = super::super::preflight(&cloud, &ctx, &database_spec("8.4.99"))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("datastore.engine_version"),
            "{err}"
        );
    }

    /// A cloud where nothing exists yet and only the preflight checks reach AWS (scripted).
    struct OnlyPreflight(AwsCloud);

    #[async_trait::async_trait]
    impl crate::cloud::Cloud for OnlyPreflight {
        async fn find(
            &self,
            _: &OpContext<'_>,
            _: &crate::model::Spec,
        ) -> Result<Option<Observed>, CloudError> {
            Ok(None)
        }
        async fn read(
            &self,
            _: &OpContext<'_>,
            _: &crate::model::Spec,
            _: &str,
        ) -> Result<Option<Observed>, CloudError> {
            Ok(None)
        }
        async fn create(
            &self,
            _: &OpContext<'_>,
            _: &crate::model::Spec,
        ) -> Result<Observed, CloudError> {
            Err(CloudError::Refused("planning only".into()))
        }
        async fn update(
            &self,
            _: &OpContext<'_>,
            _: &crate::model::Spec,
            _: &Observed,
        ) -> Result<Observed, CloudError> {
            Err(CloudError::Refused("planning only".into()))
        }
        async fn delete(&self, _: &OpContext<'_>, _: Kind, _: &Observed) -> Result<(), CloudError> {
            Err(CloudError::Refused("planning only".into()))
        }
        async fn preflight(
            &self,
            ctx: &OpContext<'_>,
            spec: &crate::model::Spec,
        ) -> Result<(), CloudError> {
            crate::cloud::Cloud::preflight(&self.0, ctx, spec).await
        }
        async fn list_owned(&self, _: &str) -> Result<Vec<Owned>, CloudError> {
            Ok(Vec::new())
        }
        async fn secret_value(&self, _: &str) -> Result<String, CloudError> {
            Err(CloudError::Refused("planning only".into()))
        }
    }

    #[tokio::test]
    async fn plan_refuses_an_engine_version_rds_does_not_offer_before_any_change() {
        use crate::engine::{make_plan, Desired, PlanError, PlanInput};
        use crate::model::{SecretSpec, SecurityGroupSpec, Spec, VpcSpec};
        let script = Script::new(|call, _| match call.action.as_str() {
            "DescribeDBEngineVersions" => engine_versions(call),
            _ => unexpected(call),
        });
        let cloud = OnlyPreflight(script.cloud(Duration::from_secs(1)));
        let desired = |version: &str| {
            let mut d = Desired::default();
            d.insert(
                "vpc",
                Spec::Vpc(VpcSpec {
                    cidr: "10.0.0.0/16".into(),
                }),
            );
            d.insert(
                "sg-db",
                Spec::SecurityGroup(SecurityGroupSpec {
                    vpc: "vpc".into(),
                    description: "datastore".into(),
                    ingress: vec![],
                    egress: vec![],
                }),
            );
            d.insert(
                "db-subnets",
                Spec::DbSubnetGroup(crate::model::DbSubnetGroupSpec { subnets: vec![] }),
            );
            d.insert(
                "datastore-password",
                Spec::Secret(SecretSpec {
                    description: "password".into(),
                    ..Default::default()
                }),
            );
            d.insert("datastore", database_spec(version));
            d
        };
        let state = crate::state::State::new("lab");
        let plan = |d: Desired| {
            let (state, cloud) = (&state, &cloud);
            async move {
                make_plan(
                    cloud,
                    PlanInput {
                        env: "lab",
                        desired: &d,
                        state,
                        destroy: false,
                        replace: &[],
                    },
                )
                .await
            }
        };
        match plan(desired("8.0.11")).await {
            Err(PlanError::Cloud { id, source, .. }) => {
                assert_eq!(id.as_str(), "datastore");
                assert!(
                    source.to_string().contains("datastore.engine_version"),
                    "{source}"
                );
            }
            other => panic!("{other:?}"),
        }
        plan(desired("8.0")).await.unwrap();
    }

    #[test]
    fn versions_compare_on_the_named_components() {
        assert!(version_matches("8.0", "8.0.39"));
        assert!(version_matches("8.0.39", "8.0.39"));
        assert!(!version_matches("8.0.3", "8.0.39"));
        assert!(!version_matches("8.0", "8.4.3"));
        assert_eq!(compare_versions("8.0", "8.0.39"), Ordering::Equal);
        assert_eq!(compare_versions("8.4", "8.0.39"), Ordering::Greater);
        assert_eq!(compare_versions("5.7", "8.0.39"), Ordering::Less);
        assert_eq!(compare_versions("8.0.40", "8.0.39"), Ordering::Greater);
        assert_eq!(compare_versions("8.0.10", "8.0.9"), Ordering::Greater);
        assert_eq!(major_version(DbEngine::Mysql, "8.0.39"), "8.0");
        assert_eq!(major_version(DbEngine::Mysql, "5.7"), "5.7");
        assert_eq!(major_version(DbEngine::Postgres, "15.8"), "15");
        assert_eq!(major_version(DbEngine::Postgres, "15"), "15");
    }

    fn spec() -> DatabaseSpec {
        DatabaseSpec {
            subnet_group: "db-subnets".into(),
            security_group: "sg-db".into(),
            engine: crate::model::DbEngine::Mysql,
            engine_version: "8.0".into(),
            instance_class: "db.t3.medium".into(),
            storage_gb: 20,
            database: "k3s".into(),
            username: "admin".into(),
            backup_retention_days: 7,
            password: Some("datastore-password".into()),
        }
    }

    fn instance() -> DbInstance {
        instance_builder().build()
    }

    fn instance_builder() -> aws_sdk_rds::types::builders::DbInstanceBuilder {
        DbInstance::builder()
            .db_instance_identifier("lab-datastore")
            .db_instance_class("db.t3.medium")
            .allocated_storage(20)
            .engine_version("8.0.39")
            .deletion_protection(true)
            .publicly_accessible(false)
            .storage_encrypted(true)
            .backup_retention_period(7)
            .db_instance_status("available")
            .endpoint(
                aws_sdk_rds::types::Endpoint::builder()
                    .address("lab-datastore.abc.us-east-1.rds.amazonaws.com")
                    .port(3306)
                    .build(),
            )
            .vpc_security_groups(
                VpcSecurityGroupMembership::builder()
                    .vpc_security_group_id("sg-1")
                    .build(),
            )
    }

    #[test]
    fn changes_cover_only_what_differs() {
        assert!(database_changes(&spec(), "sg-1", &instance())
            .unwrap()
            .is_empty());
        let want = DatabaseSpec {
            instance_class: "db.t3.large".into(),
            engine_version: "8.4".into(),
            storage_gb: 50,
            ..spec()
        };
        let changes = database_changes(&want, "sg-2", &instance()).unwrap();
        assert_eq!(
            changes,
            DatabaseChanges {
                instance_class: Some("db.t3.large".into()),
                storage_gb: Some(50),
                engine_version: Some(("8.4".into(), true)),
                security_group: Some("sg-2".into()),
                backup_retention: None,
                enable_deletion_protection: false,
                password: None,
            }
        );
        let minor = DatabaseSpec {
            engine_version: "8.0.40".into(),
            ..spec()
        };
        assert_eq!(
            database_changes(&minor, "sg-1", &instance())
                .unwrap()
                .engine_version,
            Some(("8.0.40".into(), false))
        );
    }

    #[test]
    fn a_minor_version_rds_upgraded_to_is_neither_drift_nor_a_change() {
        let resolved = resolved();
        let pinned = DatabaseSpec {
            engine_version: "8.0.39".into(),
            ..spec()
        };
        // RDS auto-upgraded the pinned 8.0.39 to 8.0.40: no drift, no downgrade, no refusal.
        let db = instance_builder().engine_version("8.0.40").build();
        assert!(database_drift(&resolved, &pinned, &db, None).is_empty());
        let changes = database_changes(&pinned, "sg-1", &db).unwrap();
        assert!(changes.is_empty(), "{changes:?}");
        // A major pin matches any of its minors.
        for have in ["8.0.11", "8.0.40", "8.0.42"] {
            let db = instance_builder().engine_version(have).build();
            assert!(
                database_drift(&resolved, &spec(), &db, None).is_empty(),
                "{have}"
            );
            assert!(database_changes(&spec(), "sg-1", &db).unwrap().is_empty());
        }
        let table = [
            ("8.0.39", "8.0.40", VersionChange::None),
            ("8.0", "8.0.40", VersionChange::None),
            ("8.0.40", "8.0.40", VersionChange::None),
            ("8.0.41", "8.0.40", VersionChange::Upgrade { major: false }),
            ("8.4", "8.0.40", VersionChange::Upgrade { major: true }),
            ("8.4.3", "8.0.40", VersionChange::Upgrade { major: true }),
            ("5.7", "8.0.40", VersionChange::Downgrade),
            ("8.0", "8.4.3", VersionChange::Downgrade),
            ("8.0.44", "8.4.3", VersionChange::Downgrade),
        ];
        for (want, have, change) in table {
            assert_eq!(
                version_change(DbEngine::Mysql, want, have),
                change,
                "{want} vs {have}"
            );
        }
    }

    #[test]
    fn a_higher_major_is_an_upgrade_and_a_lower_one_is_refused() {
        let resolved = resolved();
        let db = instance_builder().engine_version("8.0.40").build();
        let newer = DatabaseSpec {
            engine_version: "8.4".into(),
            ..spec()
        };
        assert_eq!(
            database_drift(&resolved, &newer, &db, None),
            vec!["engine version is 8.0.40, want 8.4"]
        );
        assert_eq!(
            database_changes(&newer, "sg-1", &db)
                .unwrap()
                .engine_version,
            Some(("8.4".into(), true))
        );
        let older = DatabaseSpec {
            engine_version: "5.7".into(),
            ..spec()
        };
        // Only a new database could be older: fixed, not drift an update would try.
        assert!(database_drift(&resolved, &older, &db, None).is_empty());
        assert_eq!(
            database_fixed(&older, &db),
            vec![
                "engine version is 8.0.40, want 5.7 (RDS cannot downgrade; set \
                 database.engine_version = \"8.0.40\" to keep this database)"
            ]
        );
        assert!(matches!(
            database_changes(&older, "sg-1", &db),
            Err(CloudError::Refused(_))
        ));
    }

    #[test]
    fn shrinking_storage_or_downgrading_is_refused() {
        let smaller = DatabaseSpec {
            storage_gb: 10,
            ..spec()
        };
        assert!(matches!(
            database_changes(&smaller, "sg-1", &instance()),
            Err(CloudError::Refused(_))
        ));
        let older = DatabaseSpec {
            engine_version: "5.7".into(),
            ..spec()
        };
        assert!(matches!(
            database_changes(&older, "sg-1", &instance()),
            Err(CloudError::Refused(_))
        ));
    }

    /// The security group and our password secret, as the engine resolves them.
    fn resolved() -> Resolved {
        let mut resolved = Resolved::default();
        resolved
            .entries
            .insert("sg-db".into(), Observed::new("sg-1", Attrs::None));
        resolved.entries.insert(
            "datastore-password".into(),
            Observed::new(
                OUR_SECRET,
                Attrs::Secret {
                    arn: OUR_SECRET.into(),
                },
            ),
        );
        resolved
    }

    const OUR_SECRET: &str =
        "arn:aws:secretsmanager:us-east-1:1:secret:lab-datastore-password-AbCd";
    const RDS_SECRET: &str = "arn:aws:secretsmanager:us-east-1:1:secret:rds!db-1234-XyZ";
    const PASSWORD: &str = "pw-Xk9v2LmQ7zRt4WpB";

    fn client() -> aws_sdk_rds::Client {
        aws_sdk_rds::Client::from_conf(
            aws_sdk_rds::Config::builder()
                .region(aws_sdk_rds::config::Region::new("us-east-1"))
                .behavior_version(aws_sdk_rds::config::BehaviorVersion::latest())
                .build(),
        )
    }

    fn rds_managed() -> DbInstance {
        instance_builder()
            .master_user_secret(MasterUserSecret::builder().secret_arn(RDS_SECRET).build())
            .build()
    }

    #[test]
    fn create_sets_our_password_and_never_lets_rds_manage_it() {
        let request = create_request(
            &client(),
            "lab-datastore",
            &spec(),
            "lab-db-subnets",
            "sg-1",
            PASSWORD.into(),
        );
        let input = request.as_input();
        assert_eq!(input.get_master_user_password().as_deref(), Some(PASSWORD));
        assert_eq!(*input.get_manage_master_user_password(), None);
        assert_eq!(input.get_master_username().as_deref(), Some("admin"));
        // The SDK's Debug output (what a trace log would show) redacts the value.
        assert!(!format!("{input:?}").contains(PASSWORD));
    }

    #[test]
    fn our_secret_is_the_one_to_create_from() {
        assert_eq!(
            wanted_secret(&resolved(), &spec()).unwrap().as_deref(),
            Some(OUR_SECRET)
        );
        // A secret known only by its cloud id (the ARN) works too.
        let mut by_id = resolved();
        by_id.entries.insert(
            "datastore-password".into(),
            Observed::new("arn:by-id", Attrs::None),
        );
        assert_eq!(
            wanted_secret(&by_id, &spec()).unwrap().as_deref(),
            Some("arn:by-id")
        );
        let none = DatabaseSpec {
            password: None,
            ..spec()
        };
        assert_eq!(wanted_secret(&resolved(), &none).unwrap(), None);
        assert!(wanted_secret(&Resolved::default(), &spec()).is_err());
    }

    #[test]
    fn attrs_name_the_secret_holding_the_current_password() {
        let secret_of = |db: &DbInstance, recorded: Option<&str>| match observe_database(
            &resolved(),
            &spec(),
            db,
            recorded,
        )
        .attrs
        {
            Attrs::Database { secret_arn, .. } => secret_arn,
            other => panic!("{other:?}"),
        };
        assert_eq!(secret_of(&instance(), None), OUR_SECRET);
        assert_eq!(secret_of(&instance(), Some(OUR_SECRET)), OUR_SECRET);
        assert_eq!(secret_of(&rds_managed(), None), RDS_SECRET);
        assert_eq!(secret_of(&instance(), Some("arn:old")), "arn:old");
    }

    #[test]
    fn rds_managed_password_is_drift_that_update_takes_over() {
        let drift = database_drift(&resolved(), &spec(), &rds_managed(), None);
        assert_eq!(drift.len(), 1, "{drift:?}");
        assert!(
            drift[0].starts_with("master password is managed by RDS and rotates every 7 days"),
            "{drift:?}"
        );
        assert_eq!(
            password_change(&rds_managed(), Some(OUR_SECRET), Some(RDS_SECRET)),
            Some(PasswordChange::ManagedByRds)
        );
        let changes = DatabaseChanges {
            password: Some(PasswordChange::ManagedByRds),
            ..DatabaseChanges::default()
        };
        assert!(!changes.is_empty());
        let request = modify_request(
            &client(),
            "lab-datastore",
            &changes,
            None,
            Some(PASSWORD.into()),
        );
        let input = request.as_input();
        assert_eq!(*input.get_manage_master_user_password(), Some(false));
        assert_eq!(input.get_master_user_password().as_deref(), Some(PASSWORD));
        assert_eq!(*input.get_apply_immediately(), Some(true));
        assert!(!format!("{input:?}").contains(PASSWORD));
        assert!(!drift.iter().any(|d| d.contains(PASSWORD)));
    }

    #[test]
    fn recreated_secret_is_drift_and_update_sets_the_new_password() {
        let drift = database_drift(&resolved(), &spec(), &instance(), Some("arn:old"));
        assert_eq!(drift.len(), 1, "{drift:?}");
        assert!(drift[0].contains("arn:old"), "{drift:?}");
        assert!(drift[0].contains("datastore-password"), "{drift:?}");
        assert_eq!(
            password_change(&instance(), Some(OUR_SECRET), Some("arn:old")),
            Some(PasswordChange::SecretReplaced)
        );
        let changes = DatabaseChanges {
            password: Some(PasswordChange::SecretReplaced),
            ..DatabaseChanges::default()
        };
        let request = modify_request(
            &client(),
            "lab-datastore",
            &changes,
            None,
            Some(PASSWORD.into()),
        );
        let input = request.as_input();
        assert_eq!(*input.get_manage_master_user_password(), None);
        assert_eq!(input.get_master_user_password().as_deref(), Some(PASSWORD));
        assert_eq!(*input.get_apply_immediately(), Some(true));
    }

    #[test]
    fn password_from_our_secret_is_no_change() {
        assert_eq!(password_change(&instance(), Some(OUR_SECRET), None), None);
        assert_eq!(
            password_change(&instance(), Some(OUR_SECRET), Some(OUR_SECRET)),
            None
        );
        // Nothing to set it from: no secret in the spec.
        assert_eq!(password_change(&rds_managed(), None, None), None);
        // Other changes never carry a password.
        let changes = DatabaseChanges {
            instance_class: Some("db.t3.large".into()),
            ..DatabaseChanges::default()
        };
        let request = modify_request(
            &client(),
            "lab-datastore",
            &changes,
            None,
            Some(PASSWORD.into()),
        );
        assert_eq!(*request.as_input().get_master_user_password(), None);
        assert_eq!(*request.as_input().get_manage_master_user_password(), None);
    }

    #[test]
    fn waits_end_when_the_instance_is_usable_and_only_fail_on_failed_statuses() {
        use WaitState::{Failed, Pending, Ready};
        let none = DatabaseChanges::default();
        let table: &[(&str, WaitState)] = &[
            ("available", Ready),
            // Hours after a storage change, fully usable.
            ("storage-optimization", Ready),
            ("creating", Pending("creating".into())),
            ("backing-up", Pending("backing-up".into())),
            ("modifying", Pending("modifying".into())),
            ("maintenance", Pending("maintenance".into())),
            (
                "configuring-enhanced-monitoring",
                Pending("configuring-enhanced-monitoring".into()),
            ),
            (
                "configuring-log-exports",
                Pending("configuring-log-exports".into()),
            ),
            ("upgrading", Pending("upgrading".into())),
            (
                "resetting-master-credentials",
                Pending("resetting-master-credentials".into()),
            ),
            ("rebooting", Pending("rebooting".into())),
            ("failed", Failed("failed".into())),
            ("storage-full", Failed("storage-full".into())),
            (
                "incompatible-parameters",
                Failed("incompatible-parameters".into()),
            ),
        ];
        for (status, want) in table {
            let db = instance_builder().db_instance_status(*status).build();
            assert_eq!(&wait_state(&db, &none), want, "status {status}");
        }
    }

    #[test]
    fn a_storage_change_is_done_once_applied_not_after_optimization() {
        let ours = DatabaseChanges {
            storage_gb: Some(50),
            ..DatabaseChanges::default()
        };
        let pending = aws_sdk_rds::types::PendingModifiedValues::builder()
            .allocated_storage(50)
            .build();
        // Accepted but not applied yet: wait.
        let db = instance_builder()
            .db_instance_status("available")
            .pending_modified_values(pending)
            .build();
        assert_eq!(
            wait_state(&db, &ours),
            WaitState::Pending("available, modification pending".into())
        );
        let db = instance_builder().db_instance_status("modifying").build();
        assert_eq!(
            wait_state(&db, &ours),
            WaitState::Pending("modifying".into())
        );
        // Applied: usable while RDS optimizes the storage for hours.
        let db = instance_builder()
            .db_instance_status("storage-optimization")
            .allocated_storage(50)
            .build();
        assert_eq!(wait_state(&db, &ours), WaitState::Ready);
    }

    #[test]
    fn only_our_pending_modifications_hold_the_wait() {
        // Someone scheduled a class change for the maintenance window; we changed storage.
        let pending = aws_sdk_rds::types::PendingModifiedValues::builder()
            .db_instance_class("db.t3.large")
            .build();
        let db = instance_builder().pending_modified_values(pending).build();
        let storage = DatabaseChanges {
            storage_gb: Some(50),
            ..DatabaseChanges::default()
        };
        assert_eq!(wait_state(&db, &storage), WaitState::Ready);
        let class = DatabaseChanges {
            instance_class: Some("db.t3.large".into()),
            ..DatabaseChanges::default()
        };
        assert!(matches!(wait_state(&db, &class), WaitState::Pending(_)));
        // A password change is applied when RDS no longer shows it pending.
        let pending = aws_sdk_rds::types::PendingModifiedValues::builder()
            .master_user_password("****")
            .build();
        let db = instance_builder().pending_modified_values(pending).build();
        let password = DatabaseChanges {
            password: Some(PasswordChange::ManagedByRds),
            ..DatabaseChanges::default()
        };
        assert!(matches!(wait_state(&db, &password), WaitState::Pending(_)));
    }

    #[test]
    fn drift_names_each_difference() {
        let resolved = resolved();
        assert!(database_drift(&resolved, &spec(), &instance(), None).is_empty());
        let db = instance_builder()
            .db_instance_class("db.t3.small")
            .deletion_protection(false)
            .publicly_accessible(true)
            .build();
        assert_eq!(
            database_drift(&resolved, &spec(), &db, None),
            vec![
                "instance class is db.t3.small, want db.t3.medium",
                "deletion protection is off",
                "publicly accessible",
            ]
        );
    }
}
