//! The imported SSH key pair.

use super::*;

pub(super) async fn describe_key_pairs(
    cloud: &AwsCloud,
    lookup: &Lookup,
) -> Result<Vec<KeyPairInfo>, CloudError> {
    let req = cloud.ec2.describe_key_pairs().set_filters(lookup.filters());
    let req = match lookup {
        // Key pairs imported before 2019 or by emulators may only have a name.
        Lookup::Id(id) if id.starts_with("key-") => req.key_pair_ids(id),
        Lookup::Id(id) => req.key_names(id),
        Lookup::Filters(_) => req,
    };
    let out = req
        .send()
        .await
        .map_err(|e| sdk_error("DescribeKeyPairs", e))?;
    // Checked again here because moto ignores `KeyPairIds` and lists every key.
    Ok(out
        .key_pairs()
        .iter()
        .filter(|k| match lookup {
            Lookup::Id(id) => k.key_pair_id() == Some(id) || k.key_name() == Some(id),
            Lookup::Filters(_) => true,
        })
        .cloned()
        .collect())
}

pub(super) async fn create_key_pair(
    cloud: &AwsCloud,
    ctx: &OpContext<'_>,
    public_key: &str,
) -> Result<Observed, CloudError> {
    let name = crate::names::key_pair(ctx.env, ctx.id.as_str());
    let out = cloud
        .ec2
        .import_key_pair()
        .key_name(&name)
        .public_key_material(Blob::new(public_key.trim().as_bytes()))
        .tag_specifications(tag_spec(ResourceType::KeyPair, ctx))
        .send()
        .await
        .map_err(|e| sdk_error("ImportKeyPair", e))?;
    let id = out.key_pair_id().unwrap_or(&name).to_string();
    let name = out.key_name().unwrap_or(&name).to_string();
    Ok(Observed::new(id, Attrs::KeyPair { name }))
}

pub(super) fn key_pair_attrs(k: &KeyPairInfo) -> Attrs {
    Attrs::KeyPair {
        name: k.key_name().unwrap_or_default().to_string(),
    }
}

pub(super) fn observe_key_pair(k: &KeyPairInfo) -> Observed {
    Observed::new(
        k.key_pair_id().or(k.key_name()).unwrap_or_default(),
        key_pair_attrs(k),
    )
}
