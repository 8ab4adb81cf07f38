//! Secrets Manager secrets whose value the tool generates (the datastore's master
//! password). The value is made here, sent only to Secrets Manager, and read back only
//! where it is needed (the RDS create, `artifacts`): never kept in state, plan or logs.
//!
//! A secret is named `provision/<env>/<logical id>` and tagged like every resource. It is
//! never rotated by the tool or by AWS: K3s keeps the password it was installed with.
//! Deleting schedules the deletion with a recovery window of [`RECOVERY_DAYS`] days; a
//! later create of the same environment restores a secret that is still in that window
//! and gives it a fresh value.

use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType, Tag};
use rand::distr::{Alphanumeric, SampleString};

use super::common::{ownership, Ownership};
use super::{sdk_error, AwsCloud};
use crate::cloud::{CloudError, OpContext, Owned};
use crate::model::{tags_for, Attrs, Kind, LogicalId, Observed, Spec, TAG_ENV, TAG_ID};

/// Days a deleted secret can still be restored (the shortest window AWS allows).
pub const RECOVERY_DAYS: i64 = 7;
/// Length of a generated password: letters and digits only, which every RDS engine and
/// every DSN accepts without escaping.
const PASSWORD_LEN: usize = 32;

/// The name of the secret of one logical resource.
pub fn secret_name(env: &str, id: &LogicalId) -> String {
    format!("provision/{env}/{id}")
}

fn generate_password() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), PASSWORD_LEN)
}

fn tags(ctx: &OpContext<'_>) -> Vec<Tag> {
    tags_for(ctx.env, ctx.owner, ctx.id)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// What DescribeSecret says about one secret, `None` when it does not exist or is
/// scheduled for deletion.
struct Described {
    arn: String,
    tags: Vec<(String, String)>,
    deleted: bool,
}

async fn describe(cloud: &AwsCloud, id: &str) -> Result<Option<Described>, CloudError> {
    let out = cloud
        .secrets
        .describe_secret()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| sdk_error("DescribeSecret", e));
    let out = match out {
        Err(CloudError::Api { code, .. }) if code == "ResourceNotFoundException" => {
            return Ok(None)
        }
        other => other?,
    };
    Ok(Some(Described {
        arn: out.arn().unwrap_or(id).to_string(),
        tags: out
            .tags()
            .iter()
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_string(),
                    t.value().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        deleted: out.deleted_date().is_some(),
    }))
}

fn observed(arn: &str) -> Observed {
    Observed::new(
        arn,
        Attrs::Secret {
            arn: arn.to_string(),
        },
    )
}

pub async fn find(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &Spec,
) -> Result<Option<Observed>, CloudError> {
    let Spec::Secret(_) = spec else {
        return Err(super::common::wrong_kind("secretsmanager", spec.kind()));
    };
    let name = secret_name(ctx.env, ctx.id);
    match describe(cloud, &name).await? {
        Some(d) if !d.deleted => match owner(&d, ctx) {
            Ownership::Ours => Ok(Some(observed(&d.arn))),
            other => Err(super::common::not_ours(
                Kind::Secret,
                &name,
                ctx.env,
                ctx.id.as_str(),
                &other,
            )),
        },
        _ => Ok(None),
    }
}

fn owner(d: &Described, ctx: &OpContext<'_>) -> Ownership {
    ownership(
        d.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ctx.env,
        ctx.id.as_str(),
    )
}

pub async fn read(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    cloud_id: &str,
) -> Result<Option<Observed>, CloudError> {
    // While `plan` surveys the env: from its one list of the env's secrets.
    if cloud.survey(ctx.env).is_some() {
        if let Some(owned) = list_owned(cloud, ctx.env)
            .await?
            .into_iter()
            .find(|o| o.cloud_id == cloud_id)
        {
            return Ok(Some(observed(&owned.cloud_id)));
        }
    }
    Ok(describe(cloud, cloud_id)
        .await?
        .filter(|d| !d.deleted)
        .map(|d| observed(&d.arn)))
}

pub async fn create(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    spec: &Spec,
) -> Result<Observed, CloudError> {
    let Spec::Secret(s) = spec else {
        return Err(super::common::wrong_kind("secretsmanager", spec.kind()));
    };
    let name = secret_name(ctx.env, ctx.id);
    // The tool's own value (the shared secrets bundle), else a new password.
    let value = || s.value.clone().unwrap_or_else(generate_password);
    let created = cloud
        .secrets
        .create_secret()
        .name(&name)
        .description(&s.description)
        .secret_string(value())
        .set_kms_key_id(s.kms_key_id.clone())
        .set_tags(Some(tags(ctx)))
        // Secrets Manager's own idempotency token: a retried call does not fail.
        .client_request_token(ctx.token)
        .send()
        .await
        .map_err(|e| sdk_error("CreateSecret", e));
    match created {
        Ok(out) => Ok(observed(out.arn().unwrap_or(&name))),
        Err(CloudError::Api { code, .. })
            if code == "ResourceExistsException" || code == "InvalidRequestException" =>
        {
            // Left by an earlier run: in its recovery window after a destroy, or created
            // by a run that stopped before it was recorded.
            let Some(d) = describe(cloud, &name).await? else {
                return Err(CloudError::api(
                    "CreateSecret",
                    "Conflict",
                    format!("secret {name} exists but cannot be described"),
                ));
            };
            match owner(&d, ctx) {
                Ownership::Ours => {}
                other => {
                    return Err(super::common::not_ours(
                        Kind::Secret,
                        &name,
                        ctx.env,
                        ctx.id.as_str(),
                        &other,
                    ))
                }
            }
            if d.deleted {
                cloud
                    .secrets
                    .restore_secret()
                    .secret_id(&d.arn)
                    .send()
                    .await
                    .map_err(|e| sdk_error("RestoreSecret", e))?;
            }
            // A restored secret gets a fresh value; one that holds the tool's own value
            // (left by a run that stopped, or pushed by `state push`) gets this one.
            if d.deleted || s.value.is_some() {
                cloud
                    .secrets
                    .put_secret_value()
                    .secret_id(&d.arn)
                    .secret_string(value())
                    .send()
                    .await
                    .map_err(|e| sdk_error("PutSecretValue", e))?;
            }
            Ok(observed(&d.arn))
        }
        Err(e) => Err(e),
    }
}

pub async fn update(
    cloud: &AwsCloud,
    spec: &Spec,
    current: &Observed,
) -> Result<Observed, CloudError> {
    let Spec::Secret(s) = spec else {
        return Err(super::common::wrong_kind("secretsmanager", spec.kind()));
    };
    cloud
        .secrets
        .update_secret()
        .secret_id(&current.cloud_id)
        .description(&s.description)
        .set_kms_key_id(s.kms_key_id.clone())
        .send()
        .await
        .map_err(|e| sdk_error("UpdateSecret", e))?;
    // A new bundle (a renewed certificate, a new cluster token): store it as the current
    // version. A generated password is never replaced here.
    if let Some(value) = &s.value {
        cloud
            .secrets
            .put_secret_value()
            .secret_id(&current.cloud_id)
            .secret_string(value)
            .send()
            .await
            .map_err(|e| sdk_error("PutSecretValue", e))?;
    }
    Ok(observed(&current.cloud_id))
}

pub async fn delete(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    current: &Observed,
) -> Result<(), CloudError> {
    let out = cloud
        .secrets
        .delete_secret()
        .secret_id(&current.cloud_id)
        .recovery_window_in_days(RECOVERY_DAYS)
        .send()
        .await
        .map_err(|e| sdk_error("DeleteSecret", e));
    match out {
        Ok(_) => {
            ctx.progress.status(&format!(
                "scheduled for deletion; restorable for {RECOVERY_DAYS} days"
            ));
            let name = current
                .cloud_id
                .rsplit(':')
                .next()
                .unwrap_or(&current.cloud_id);
            ctx.progress.kept(&format!(
                "secret {name} in its {RECOVERY_DAYS}-day recovery window (`aws \
                 secretsmanager restore-secret --secret-id {}` brings it back)",
                current.cloud_id
            ));
            Ok(())
        }
        Err(CloudError::Api { code, .. }) if code == "ResourceNotFoundException" => Ok(()),
        // Already scheduled for deletion (a delete whose reply was lost, tried again):
        // AWS refuses a second DeleteSecret with InvalidRequestException.
        Err(CloudError::Api { code, message, .. })
            if code == "InvalidRequestException" && already_deleted(&message) =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Secrets Manager's answer to a DeleteSecret of a secret already scheduled for deletion
/// ("...on a secret that's currently marked deleted").
fn already_deleted(message: &str) -> bool {
    message.contains("marked deleted") || message.contains("scheduled for deletion")
}

pub async fn list_owned(cloud: &AwsCloud, env: &str) -> Result<Vec<Owned>, CloudError> {
    match cloud.survey(env) {
        Some(survey) => survey.lists.get("secrets", || list_env(cloud, env)).await,
        None => list_env(cloud, env).await,
    }
}

/// The live secrets tagged for `env`.
async fn list_env(cloud: &AwsCloud, env: &str) -> Result<Vec<Owned>, CloudError> {
    let filters = vec![
        Filter::builder()
            .key(FilterNameStringType::TagKey)
            .values(TAG_ENV)
            .build(),
        Filter::builder()
            .key(FilterNameStringType::TagValue)
            .values(env)
            .build(),
    ];
    let mut owned = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let out = cloud
            .secrets
            .list_secrets()
            .set_filters(Some(filters.clone()))
            .set_next_token(next.take())
            .send()
            .await
            .map_err(|e| sdk_error("ListSecrets", e))?;
        for s in out.secret_list() {
            if s.deleted_date().is_some() {
                continue;
            }
            let tag = |key: &str| {
                s.tags()
                    .iter()
                    .find(|t| t.key() == Some(key))
                    .and_then(|t| t.value())
            };
            if tag(TAG_ENV) != Some(env) {
                continue;
            }
            let (Some(arn), Some(id)) = (s.arn(), tag(TAG_ID)) else {
                continue;
            };
            owned.push(Owned {
                kind: Kind::Secret,
                id: LogicalId::new(id),
                cloud_id: arn.to_string(),
                attrs: Attrs::Secret {
                    arn: arn.to_string(),
                },
                owner: crate::model::FoundOwner::from_tags(
                    s.tags()
                        .iter()
                        .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())),
                ),
            });
        }
        match out.next_token() {
            Some(t) if !t.is_empty() => next = Some(t.to_string()),
            _ => break,
        }
    }
    Ok(owned)
}

/// The master password held by a secret: the tool's own secret keeps it as plain text, one
/// RDS manages (environments built by earlier versions) as `{"username": .., "password": ..}`.
/// The value is returned, never logged, and no error message carries it.
pub async fn secret_value(cloud: &AwsCloud, arn: &str) -> Result<String, CloudError> {
    let out = cloud
        .secrets
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| sdk_error("GetSecretValue", e))?;
    let text = out.secret_string().ok_or_else(|| {
        CloudError::api(
            "GetSecretValue",
            "NoSecretString",
            format!("secret {arn} holds no text value"),
        )
    })?;
    password_from_secret(text).ok_or_else(|| {
        CloudError::api(
            "GetSecretValue",
            "InvalidSecret",
            format!(
                "secret {arn} holds neither a password nor a JSON object with a `password` field"
            ),
        )
    })
}

/// The password in a secret's text: a JSON object's `password` field, or the text itself.
pub fn password_from_secret(text: &str) -> Option<String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(fields)) => fields
            .get("password")?
            .as_str()
            .filter(|p| !p.is_empty())
            .map(str::to_string),
        _ => (!text.is_empty()).then(|| text.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_alphanumeric_and_fresh() {
        let a = generate_password();
        let b = generate_password();
        assert_eq!(a.len(), PASSWORD_LEN);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn password_comes_from_the_json_secret() {
        assert_eq!(
            password_from_secret(r#"{"username":"admin","password":"s3cr\"t"}"#).as_deref(),
            Some("s3cr\"t")
        );
        assert_eq!(password_from_secret(r#"{"username":"admin"}"#), None);
    }

    #[test]
    fn password_is_the_plain_text_of_our_secret() {
        assert_eq!(
            password_from_secret("Xk9v2LmQ7zRt4WpB").as_deref(),
            Some("Xk9v2LmQ7zRt4WpB")
        );
        // Plain passwords that happen to parse as JSON (digits, a quoted word) stay as they are.
        assert_eq!(
            password_from_secret("12345678").as_deref(),
            Some("12345678")
        );
        assert_eq!(
            password_from_secret(r#""quoted""#).as_deref(),
            Some(r#""quoted""#)
        );
        assert_eq!(password_from_secret(""), None);
    }
    #[test]
    fn names_are_per_env_and_id() {
        assert_eq!(
            secret_name("lab", &LogicalId::new("datastore-password")),
            "provision/lab/datastore-password"
        );
    }
}
