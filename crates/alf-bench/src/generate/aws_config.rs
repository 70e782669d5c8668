//! AWS Config configuration history: one `{"fileVersion":"1.0","configurationItems":[...]}`
//! document (a record is one configuration item) mixing security groups, S3 buckets and
//! IAM roles created, changed and deleted.

use std::fmt::Write;

use super::LogWriter;
use super::owned;
use crate::clock::Clock;
use crate::pools;
use crate::rng::Rng;

#[derive(Debug, Default)]
pub struct ConfigHistory;

impl LogWriter for ConfigHistory {
    fn begin(&mut self, _rng: &mut Rng, _clock: &mut Clock, out: &mut String) {
        out.push_str(r#"{"fileVersion":"1.0","configurationItems":["#);
    }

    fn record(&mut self, index: u64, rng: &mut Rng, clock: &mut Clock, out: &mut String) {
        clock.tick(rng, 5_000_000);
        if index > 0 {
            out.push(',');
        }
        let time = owned(|s| clock.iso_millis(s));
        let account = rng.pick(pools::ACCOUNTS);
        let region = rng.weighted(pools::REGIONS);
        let status = rng.weighted(&[
            (70, "OK"),
            (20, "ResourceDiscovered"),
            (10, "ResourceDeleted"),
        ]);
        let id = rng.hex_string(17);
        let _ = write!(
            out,
            r#"{{"relatedEvents":[],"relationships":[{{"resourceId":"vpc-0a1b2c3d","resourceType":"AWS::EC2::VPC","name":"Is contained in Vpc"}}],"#
        );
        match rng.below(3) {
            0 => {
                let _ = write!(
                    out,
                    r#""configuration":{{"description":"web tier","groupName":"web-{id}","ipPermissions":[{{"ipProtocol":"tcp","fromPort":{port},"toPort":{port},"ipRanges":["0.0.0.0/0"]}}],"ownerId":"{account}","groupId":"sg-{id}","vpcId":"vpc-0a1b2c3d"}},"supplementaryConfiguration":{{}},"tags":{{"env":"prod"}},"configurationItemVersion":"1.3","configurationItemCaptureTime":"{time}","configurationStateId":{ms},"awsAccountId":"{account}","configurationItemStatus":"{status}","resourceType":"AWS::EC2::SecurityGroup","resourceId":"sg-{id}","resourceName":"web-{id}","ARN":"arn:aws:ec2:{region}:{account}:security-group/sg-{id}","awsRegion":"{region}","availabilityZone":"Not Applicable","configurationStateMd5Hash":""}}"#,
                    port = rng.pick(&[22u32, 443, 3389, 5432]),
                    ms = clock.epoch_millis()
                );
            }
            1 => {
                let _ = write!(
                    out,
                    r#""configuration":{{"name":"data-{id}","owner":{{"id":"79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"}},"creationDate":"{time}"}},"supplementaryConfiguration":{{"PublicAccessBlockConfiguration":{{"blockPublicAcls":true,"ignorePublicAcls":true,"blockPublicPolicy":{public},"restrictPublicBuckets":true}}}},"tags":{{}},"configurationItemVersion":"1.3","configurationItemCaptureTime":"{time}","configurationStateId":{ms},"awsAccountId":"{account}","configurationItemStatus":"{status}","resourceType":"AWS::S3::Bucket","resourceId":"data-{id}","resourceName":"data-{id}","ARN":"arn:aws:s3:::data-{id}","awsRegion":"{region}","availabilityZone":"Regional","configurationStateMd5Hash":""}}"#,
                    public = rng.chance(80),
                    ms = clock.epoch_millis()
                );
            }
            _ => {
                let _ = write!(
                    out,
                    r#""configuration":{{"roleName":"deploy-{id}","path":"/","assumeRolePolicyDocument":"%7B%22Version%22%3A%222012-10-17%22%7D","attachedManagedPolicies":[{{"policyName":"ReadOnlyAccess","policyArn":"arn:aws:iam::aws:policy/ReadOnlyAccess"}}]}},"supplementaryConfiguration":{{}},"tags":{{}},"configurationItemVersion":"1.3","configurationItemCaptureTime":"{time}","configurationStateId":{ms},"awsAccountId":"{account}","configurationItemStatus":"{status}","resourceType":"AWS::IAM::Role","resourceId":"AROA{id}","resourceName":"deploy-{id}","ARN":"arn:aws:iam::{account}:role/deploy-{id}","awsRegion":"global","availabilityZone":"Not Applicable","configurationStateMd5Hash":""}}"#,
                    ms = clock.epoch_millis()
                );
            }
        }
    }

    fn end(&mut self, out: &mut String) {
        out.push_str("]}\n");
    }
}
