//! The harness itself: the proxy forwards, records, injects faults and holds responses.

use crate::harness::{Aws, Moto, Proxy};

#[test]
fn proxy_records_classifies_faults_and_holds() {
    let moto = Moto::start();
    let proxy = Proxy::start(moto.port);
    let through = Aws::new(&proxy.endpoint());

    through.block(through.ec2.describe_vpcs().send()).unwrap();
    let vpc = through
        .block(through.ec2.create_vpc().cidr_block("10.9.0.0/16").send())
        .unwrap();
    let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
    through
        .block(through.route53.list_hosted_zones().send())
        .unwrap();
    through
        .block(through.secrets.list_secrets().send())
        .unwrap();
    let stats = proxy.stats();
    let names: Vec<String> = stats.calls.iter().map(|c| c.to_string()).collect();
    assert_eq!(
        names,
        [
            "ec2:DescribeVpcs",
            "ec2:CreateVpc",
            "route53:GET /2013-04-01/hostedzone",
            "secretsmanager:ListSecrets"
        ]
    );
    assert_eq!(stats.mutating_names(), ["ec2:CreateVpc"]);

    // Every call faulted: the SDK sees the throttling code of each protocol, and nothing
    // reached the emulator.
    proxy.reset();
    proxy.configure(serde_json::json!({"fault_rate": 1.0, "seed": 1}));
    let err = through
        .block(through.ec2.create_vpc().cidr_block("10.8.0.0/16").send())
        .unwrap_err();
    assert!(
        format!("{err:?}").contains("RequestLimitExceeded"),
        "{err:?}"
    );
    let err = through
        .block(through.rds.describe_db_instances().send())
        .unwrap_err();
    assert!(format!("{err:?}").contains("Throttling"), "{err:?}");
    let err = through
        .block(through.route53.list_hosted_zones().send())
        .unwrap_err();
    assert!(format!("{err:?}").contains("Throttling"), "{err:?}");
    let err = through
        .block(through.secrets.list_secrets().send())
        .unwrap_err();
    assert!(
        format!("{err:?}").contains("ThrottlingException"),
        "{err:?}"
    );
    assert!(proxy.stats().calls.iter().all(|c| c.faulted));
    let direct = Aws::new(&moto.endpoint());
    let vpcs = direct.block(direct.ec2.describe_vpcs().send()).unwrap();
    assert!(
        vpcs.vpcs()
            .iter()
            .all(|v| v.cidr_block() != Some("10.8.0.0/16")),
        "a faulted call reached the emulator"
    );

    // Hold the second mutating call: it reaches the emulator but is never answered.
    proxy.reset();
    proxy.configure(serde_json::json!({"hold_after_mutations": 2}));
    through
        .block(
            through
                .ec2
                .create_tags()
                .resources(&vpc_id)
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key("a")
                        .value("1")
                        .build(),
                )
                .send(),
        )
        .unwrap();
    assert!(!proxy.stats().held);
    let endpoint = proxy.endpoint();
    let held = std::thread::spawn(move || {
        let aws = Aws::new(&endpoint);
        let _ = aws.block(aws.ec2.create_vpc().cidr_block("10.7.0.0/16").send());
    });
    crate::harness::wait_until(
        "the proxy to hold",
        std::time::Duration::from_secs(10),
        || proxy.stats().held,
    );
    let vpcs = direct.block(direct.ec2.describe_vpcs().send()).unwrap();
    assert!(
        vpcs.vpcs()
            .iter()
            .any(|v| v.cidr_block() == Some("10.7.0.0/16")),
        "the held call did not reach the emulator"
    );
    assert!(!held.is_finished(), "the held call was answered");
    proxy.reset();
    drop(held);
}
