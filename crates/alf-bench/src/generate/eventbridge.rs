//! EventBridge events delivered by Amazon Data Firehose, back to back without a
//! separator: Inspector and Macie findings and EC2 state changes ([`record`]), and
//! Security Hub "Findings - Imported" batches of ASFF findings ([`SecurityHub`], a record
//! is one finding, [`FINDINGS_PER_EVENT`] per event).

use std::fmt::Write;

use super::{LogWriter, owned};
use crate::clock::Clock;
use crate::pools;
use crate::rng::Rng;

pub const FINDINGS_PER_EVENT: u64 = 5;

fn envelope(rng: &mut Rng, clock: &Clock, detail_type: &str, source: &str, out: &mut String) {
    let id = owned(|s| pools::uuid(rng, s));
    let time = owned(|s| clock.iso_secs(s));
    let account = rng.pick(pools::ACCOUNTS);
    let region = rng.weighted(pools::REGIONS);
    let _ = write!(
        out,
        r#"{{"version":"0","id":"{id}","detail-type":"{detail_type}","source":"{source}","account":"{account}","time":"{time}","region":"{region}","resources":["arn:aws:ec2:{region}:{account}:instance/i-0{}"],"detail":"#,
        rng.hex_string(16)
    );
}

/// Appends one EventBridge event (an Inspector or Macie finding or an EC2 state change).
pub fn record(rng: &mut Rng, clock: &mut Clock, out: &mut String) {
    clock.tick(rng, 2_000_000);
    match rng.below(3) {
        0 => {
            envelope(rng, clock, "Inspector2 Finding", "aws.inspector2", out);
            let _ = write!(
                out,
                r#"{{"description":"A buffer overflow allows remote code execution.","findingArn":"arn:aws:inspector2:us-east-1:123456789012:finding/{}","inspectorScore":{}.{},"packageVulnerabilityDetails":{{"source":"NVD","vulnerabilityId":"CVE-2024-{:04}","vulnerablePackages":[{{"name":"openssl","version":"3.0.7"}}]}},"severity":"{}","status":"ACTIVE","title":"CVE-2024-{:04} - openssl","type":"PACKAGE_VULNERABILITY"}}}}"#,
                rng.hex_string(32),
                rng.range(1, 9),
                rng.below(10),
                rng.range(1, 9999),
                rng.pick(&["LOW", "MEDIUM", "HIGH", "CRITICAL"]),
                rng.range(1, 9999)
            );
        }
        1 => {
            envelope(rng, clock, "Macie Finding", "aws.macie", out);
            let _ = write!(
                out,
                r#"{{"schemaVersion":"1.0","id":"{}","type":"SensitiveData:S3Object/Personal","title":"The S3 object contains personal information.","description":"The object contains personal information.","severity":{{"score":2,"description":"Medium"}},"category":"CLASSIFICATION","resourcesAffected":{{"s3Bucket":{{"name":"exports-{}"}},"s3Object":{{"key":"2024/03/customers.csv","size":{}}}}}}}}}"#,
                rng.hex_string(32),
                rng.hex_string(6),
                rng.range(100, 9_000_000)
            );
        }
        _ => {
            envelope(
                rng,
                clock,
                "EC2 Instance State-change Notification",
                "aws.ec2",
                out,
            );
            let _ = write!(
                out,
                r#"{{"instance-id":"i-0{}","state":"{}"}}}}"#,
                rng.hex_string(16),
                rng.pick(&["pending", "running", "stopping", "terminated"])
            );
        }
    }
}

#[derive(Debug, Default)]
pub struct SecurityHub {
    open: bool,
}

impl LogWriter for SecurityHub {
    fn record(&mut self, index: u64, rng: &mut Rng, clock: &mut Clock, out: &mut String) {
        clock.tick(rng, 1_000_000);
        if index % FINDINGS_PER_EVENT == 0 {
            if self.open {
                out.push_str("]}}");
            }
            envelope(
                rng,
                clock,
                "Security Hub Findings - Imported",
                "aws.securityhub",
                out,
            );
            out.push_str(r#"{"findings":["#);
            self.open = true;
        } else {
            out.push(',');
        }
        let time = owned(|s| clock.iso_millis(s));
        let account = rng.pick(pools::ACCOUNTS);
        let (control, title, label, normalized) = rng.pick(&[
            (
                "S3.8",
                "S3 general purpose buckets should block public access",
                "HIGH",
                70u32,
            ),
            (
                "EC2.8",
                "EC2 instances should use Instance Metadata Service Version 2 (IMDSv2)",
                "MEDIUM",
                40,
            ),
            (
                "IAM.6",
                "Hardware MFA should be enabled for the root user",
                "CRITICAL",
                90,
            ),
            (
                "CloudTrail.1",
                "CloudTrail should be enabled and configured with at least one multi-Region trail",
                "HIGH",
                70,
            ),
        ]);
        let status = rng.pick(&["FAILED", "PASSED"]);
        let _ = write!(
            out,
            r#"{{"SchemaVersion":"2018-10-08","Id":"arn:aws:securityhub:us-east-1:{account}:security-control/{control}/finding/{id}","ProductArn":"arn:aws:securityhub:us-east-1::product/aws/securityhub","ProductName":"Security Hub","CompanyName":"AWS","Region":"us-east-1","GeneratorId":"security-control/{control}","AwsAccountId":"{account}","Types":["Software and Configuration Checks/Industry and Regulatory Standards/AWS-Foundational-Security-Best-Practices"],"FirstObservedAt":"{time}","LastObservedAt":"{time}","CreatedAt":"{time}","UpdatedAt":"{time}","Severity":{{"Label":"{label}","Normalized":{normalized},"Original":"{label}"}},"Title":"{title}","Description":"This control checks {control}.","Resources":[{{"Type":"AwsAccount","Id":"AWS::::Account:{account}","Partition":"aws","Region":"us-east-1"}}],"Compliance":{{"Status":"{status}","SecurityControlId":"{control}"}},"WorkflowState":"NEW","Workflow":{{"Status":"NEW"}},"RecordState":"ACTIVE"}}"#,
            id = rng.hex_string(32)
        );
    }

    fn end(&mut self, out: &mut String) {
        if self.open {
            out.push_str("]}}");
        }
    }
}
