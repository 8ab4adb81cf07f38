//! The MySQL instance (`<env>-datastore`) K3s uses as its datastore.

use std::cmp::Ordering;

use aws_sdk_rds::types::DbInstance;

use super::super::common::{gone, has_code, poll_until, retry_in_use, Poll};
use super::super::{sdk_error, AwsCloud};
use super::{
    check_owner, database_identifier, final_snapshot_identifier, owned_id, rds_tags, tag_pairs,
    tags_of,
};
use crate::cloud::{CloudError, OpContext, Owned};
use crate::model::{Attrs, DatabaseSpec, Kind, Observed, Resolved};

const ENGINE: &str = "mysql";
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
    // Adopting an instance an interrupted run left creating: its dependents need the
    // endpoint, which only exists once it is available.
    let status = db.db_instance_status().unwrap_or_default();
    let db = if db.endpoint().is_none() && !FAILED_STATUSES.contains(&status) {
        wait_available(cloud, ctx, &identifier).await?
    } else {
        db
    };
    Ok(Some(observe_database(ctx.resolved, spec, &db)))
}

pub async fn read(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &DatabaseSpec,
    identifier: &str,
) -> Result<Option<Observed>, CloudError> {
    Ok(describe_database(cloud, identifier)
        .await?
        .map(|db| observe_database(ctx.resolved, spec, &db)))
}

pub async fn create(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &DatabaseSpec,
) -> Result<Observed, CloudError> {
    create_database(cloud, ctx, spec).await
}

pub async fn update(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &DatabaseSpec,
    current: &Observed,
) -> Result<Observed, CloudError> {
    update_database(cloud, ctx, spec, &current.cloud_id).await
}

pub async fn delete(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    identifier: &str,
) -> Result<(), CloudError> {
    delete_database(cloud, ctx, identifier).await
}

/// DB instances tagged `provision:env=<env>`.
pub async fn list_owned(cloud: &AwsCloud, env: &str) -> Result<Vec<Owned>, CloudError> {
    let mut owned = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = cloud
            .rds
            .describe_db_instances()
            .set_marker(marker.take())
            .send()
            .await
            .map_err(|e| sdk_error("DescribeDBInstances", e))?;
        for db in out.db_instances() {
            let tags = database_tags(cloud, db).await?;
            if let Some(id) = owned_id(&tags, env) {
                owned.push(Owned {
                    kind: Kind::Database,
                    id,
                    cloud_id: db.db_instance_identifier().unwrap_or_default().to_string(),
                    attrs: database_attrs(db),
                });
            }
        }
        match out.marker() {
            Some(m) if !m.is_empty() => marker = Some(m.to_string()),
            _ => break,
        }
    }
    Ok(owned)
}

async fn create_database(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &DatabaseSpec,
) -> Result<Observed, CloudError> {
    let identifier = database_identifier(ctx.env);
    let subnet_group = ctx.resolved.cloud_id(&spec.subnet_group)?;
    let security_group = ctx.resolved.cloud_id(&spec.security_group)?;
    let result = cloud
        .rds
        .create_db_instance()
        .db_instance_identifier(&identifier)
        .engine(ENGINE)
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
        .manage_master_user_password(true)
        .vpc_security_group_ids(security_group)
        .db_subnet_group_name(subnet_group)
        .copy_tags_to_snapshot(true)
        .set_tags(Some(rds_tags(ctx)))
        .send()
        .await;
    match result {
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
    let db = wait_available(cloud, ctx, &identifier).await?;
    Ok(observe_database(ctx.resolved, spec, &db))
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
    match compare_versions(&spec.engine_version, have_version) {
        Ordering::Greater => {
            changes.engine_version = Some((
                spec.engine_version.clone(),
                major_version(&spec.engine_version) != major_version(have_version),
            ))
        }
        Ordering::Less => {
            return Err(CloudError::Refused(format!(
            "rds instance {identifier} runs MySQL {have_version}; RDS cannot downgrade it to {}",
            spec.engine_version
        )))
        }
        Ordering::Equal => {}
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

async fn update_database(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &DatabaseSpec,
    identifier: &str,
) -> Result<Observed, CloudError> {
    let db = describe_database(cloud, identifier)
        .await?
        .ok_or_else(|| gone(Kind::Database, identifier))?;
    let security_group = ctx.resolved.cloud_id(&spec.security_group)?;
    let changes = database_changes(spec, security_group, &db)?;
    if changes.is_empty() {
        return Ok(observe_database(ctx.resolved, spec, &db));
    }
    let engine_version = match &changes.engine_version {
        Some((version, _)) => Some(exact_engine_version(cloud, version).await?),
        None => None,
    };
    let request = cloud
        .rds
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
        .set_deletion_protection(changes.enable_deletion_protection.then_some(true));
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
    let db = wait_available(cloud, ctx, identifier).await?;
    Ok(observe_database(ctx.resolved, spec, &db))
}

/// The full engine version RDS picks by default for `version` (`8.0` → `8.0.40`); the
/// version as given when it already is one, or when RDS lists none.
async fn exact_engine_version(cloud: &AwsCloud, version: &str) -> Result<String, CloudError> {
    if version.split('.').count() >= 3 {
        return Ok(version.to_string());
    }
    let out = cloud
        .rds
        .describe_db_engine_versions()
        .engine(ENGINE)
        .engine_version(version)
        .default_only(true)
        .send()
        .await
        .map_err(|e| sdk_error("DescribeDBEngineVersions", e))?;
    Ok(out
        .db_engine_versions()
        .iter()
        .filter_map(|v| v.engine_version())
        .find(|v| version_matches(version, v))
        .unwrap_or(version)
        .to_string())
}

async fn delete_database(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    identifier: &str,
) -> Result<(), CloudError> {
    let Some(db) = describe_database(cloud, identifier).await? else {
        return Ok(());
    };
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
                    .delete_automated_backups(false)
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

/// Poll until the instance is `available` with none of our modifications pending.
async fn wait_available(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    identifier: &str,
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
            let status = db.db_instance_status().unwrap_or("unknown").to_string();
            if FAILED_STATUSES.contains(&status.as_str()) {
                return Err(CloudError::api(
                    "DescribeDBInstances",
                    "InstanceFailed",
                    format!("rds instance {identifier} is in status {status}"),
                ));
            }
            if status != "available" {
                return Ok(Poll::Pending(status));
            }
            if has_pending_changes(&db) {
                return Ok(Poll::Pending("modification pending".to_string()));
            }
            Ok(Poll::Done(db))
        },
    )
    .await
}

/// Whether a modification we make (class, storage, version, retention) is still pending.
fn has_pending_changes(db: &DbInstance) -> bool {
    db.pending_modified_values().is_some_and(|p| {
        p.db_instance_class().is_some()
            || p.allocated_storage().is_some()
            || p.engine_version().is_some()
            || p.backup_retention_period().is_some()
            || p.storage_type().is_some()
    })
}

async fn describe_database(
    cloud: &AwsCloud,
    identifier: &str,
) -> Result<Option<DbInstance>, CloudError> {
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
            .unwrap_or(3306),
        secret_arn: db
            .master_user_secret()
            .and_then(|s| s.secret_arn())
            .unwrap_or_default()
            .to_string(),
        status: db.db_instance_status().unwrap_or_default().to_string(),
    }
}

fn observe_database(resolved: &Resolved, spec: &DatabaseSpec, db: &DbInstance) -> Observed {
    Observed {
        cloud_id: db.db_instance_identifier().unwrap_or_default().to_string(),
        attrs: database_attrs(db),
        drift: database_drift(resolved, spec, db),
    }
}

fn database_drift(resolved: &Resolved, spec: &DatabaseSpec, db: &DbInstance) -> Vec<String> {
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
    if !version_matches(&spec.engine_version, version) {
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
    if db.storage_encrypted() == Some(false) {
        drift.push("storage is not encrypted".to_string());
    }
    if db.master_user_secret().is_none() {
        drift.push("master password is not managed in Secrets Manager".to_string());
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

/// The major version of a MySQL version: its first two components (`8.0.39` → `8.0`).
fn major_version(version: &str) -> String {
    version.split('.').take(2).collect::<Vec<_>>().join(".")
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
    use super::*;
    use aws_sdk_rds::types::{MasterUserSecret, VpcSecurityGroupMembership};

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
        assert_eq!(major_version("8.0.39"), "8.0");
        assert_eq!(major_version("5.7"), "5.7");
    }

    fn spec() -> DatabaseSpec {
        DatabaseSpec {
            subnet_group: "db-subnets".into(),
            security_group: "sg-db".into(),
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
            .master_user_secret(MasterUserSecret::builder().secret_arn("arn:secret").build())
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

    #[test]
    fn drift_names_each_difference() {
        let mut resolved = Resolved::default();
        resolved
            .entries
            .insert("sg-db".into(), Observed::new("sg-1", Attrs::None));
        assert!(database_drift(&resolved, &spec(), &instance()).is_empty());
        let db = instance_builder()
            .db_instance_class("db.t3.small")
            .deletion_protection(false)
            .publicly_accessible(true)
            .build();
        assert_eq!(
            database_drift(&resolved, &spec(), &db),
            vec![
                "instance class is db.t3.small, want db.t3.medium",
                "deletion protection is off",
                "publicly accessible",
            ]
        );
    }
}
