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

#[test]
fn proxy_refuses_in_use_loses_replies_and_honours_client_tokens() {
    let moto = Moto::start();
    let proxy = Proxy::start(moto.port);
    let through = Aws::new(&proxy.endpoint());
    let direct = Aws::new(&moto.endpoint());
    let cidr_count = |cidr: &str| {
        direct
            .block(direct.ec2.describe_vpcs().send())
            .unwrap()
            .vpcs()
            .iter()
            .filter(|v| v.cidr_block() == Some(cidr))
            .count()
    };

    // In use: the first K deletes get the service's error and never reach the emulator.
    let vpc = through
        .block(through.ec2.create_vpc().cidr_block("10.9.0.0/16").send())
        .unwrap();
    let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
    proxy.configure(serde_json::json!({"in_use": {
        "DeleteVpc": 2, "DeleteTargetGroup": 1, "DeleteDBSubnetGroup": 1, "DeleteDBInstance": 1
    }}));
    for _ in 0..2 {
        let err = through
            .block(through.ec2.delete_vpc().vpc_id(&vpc_id).send())
            .unwrap_err();
        assert!(
            format!("{err:?}").contains("DependencyViolation"),
            "{err:?}"
        );
        assert_eq!(
            cidr_count("10.9.0.0/16"),
            1,
            "an in-use answer reached moto"
        );
    }
    let err = through
        .block(
            through
                .elb
                .delete_target_group()
                .target_group_arn(
                    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/x/1",
                )
                .send(),
        )
        .unwrap_err();
    assert!(format!("{err:?}").contains("ResourceInUse"), "{err:?}");
    let err = through
        .block(
            through
                .rds
                .delete_db_subnet_group()
                .db_subnet_group_name("x")
                .send(),
        )
        .unwrap_err();
    assert!(
        format!("{err:?}").contains("InvalidDBSubnetGroupStateFault"),
        "{err:?}"
    );
    let err = through
        .block(
            through
                .rds
                .delete_db_instance()
                .db_instance_identifier("x")
                .skip_final_snapshot(true)
                .send(),
        )
        .unwrap_err();
    assert!(
        format!("{err:?}").contains("InvalidDBInstanceState"),
        "{err:?}"
    );
    through
        .block(through.ec2.delete_vpc().vpc_id(&vpc_id).send())
        .expect("the third delete goes through");
    assert_eq!(cidr_count("10.9.0.0/16"), 0);
    assert_eq!(proxy.stats().faults("in_use").len(), 5);

    // A lost reply: the emulator did it, the SDK saw a 500 and retried: a twin.
    for mode in ["error", "drop"] {
        proxy.reset();
        proxy.configure(
            serde_json::json!({"lose_reply": {"CreateVpc": 1}, "lose_reply_mode": mode}),
        );
        let cidr = if mode == "error" {
            "10.8.0.0/16"
        } else {
            "10.7.0.0/16"
        };
        through
            .block(through.ec2.create_vpc().cidr_block(cidr).send())
            .unwrap_or_else(|e| panic!("{mode}: the SDK should retry a lost reply: {e:?}"));
        assert_eq!(cidr_count(cidr), 2, "{mode}: the lost call reached moto");
        let stats = proxy.stats();
        assert_eq!(stats.faults("lost_reply").len(), 1, "{mode}");
        assert_eq!(
            stats.mutating().len(),
            2,
            "{mode}: lost reply + the SDK's retry"
        );
    }

    // ClientToken: a repeated RunInstances answers the first reservation, without
    // reaching moto; other parameters with the same token are refused.
    proxy.reset();
    proxy.configure(serde_json::json!({"lose_reply": {"RunInstances": 1}}));
    let run = |token: &str, kind: aws_sdk_ec2::types::InstanceType| {
        through
            .block(
                through
                    .ec2
                    .run_instances()
                    .image_id(crate::harness::AMI)
                    .instance_type(kind)
                    .min_count(1)
                    .max_count(1)
                    .client_token(token)
                    .send(),
            )
            .map_err(|e| format!("{e:?}"))
    };
    let t3 = aws_sdk_ec2::types::InstanceType::T3Micro;
    let first = run("token-1", t3.clone()).expect("retried with the same token");
    let again = run("token-1", t3.clone()).unwrap();
    assert_eq!(first.reservation_id(), again.reservation_id());
    let err = run("token-1", aws_sdk_ec2::types::InstanceType::T3Large).unwrap_err();
    assert!(err.contains("IdempotentParameterMismatch"), "{err}");
    let instances: usize = direct
        .block(direct.ec2.describe_instances().send())
        .unwrap()
        .reservations()
        .iter()
        .map(|r| r.instances().len())
        .sum();
    assert_eq!(instances, 1, "one instance for one token");
    let stats = proxy.stats();
    assert_eq!(stats.faults("lost_reply").len(), 1);
    assert_eq!(stats.faults("token_replay").len(), 2, "{:?}", stats.calls);
    assert_eq!(stats.faults("token_mismatch").len(), 1);

    // Tokens ignored (moto's behaviour): the same token makes a second instance.
    proxy.reset();
    proxy.configure(serde_json::json!({"honour_client_token": false}));
    run("token-2", t3.clone()).unwrap();
    run("token-2", t3).unwrap();
    let instances: usize = direct
        .block(direct.ec2.describe_instances().send())
        .unwrap()
        .reservations()
        .iter()
        .map(|r| r.instances().len())
        .sum();
    assert_eq!(instances, 3);
}
