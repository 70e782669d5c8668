//! CloudTrail log files: one JSON document `{"Records":[...]}` per file, records in
//! the layout of AWS's documented examples (management events, console sign-ins, S3
//! data events, service-invoked calls and access-denied errors).

use std::fmt::Write;

use super::LogWriter;
use super::json;
use super::owned;
use crate::clock::Clock;
use crate::pools::{self, USER_AGENTS};
use crate::rng::Rng;

/// What kind of identity made the call.
#[derive(Clone, Copy)]
enum Who {
    User,
    Role,
    Service(&'static str),
    Root,
}

/// Event source, event name, read only, category.
type EventSpec = (&'static str, &'static str, bool, &'static str);

/// Weighted mix of API calls.
const EVENTS: &[(u32, EventSpec)] = &[
    (20, ("s3.amazonaws.com", "GetObject", true, "Data")),
    (8, ("s3.amazonaws.com", "PutObject", false, "Data")),
    (12, ("sts.amazonaws.com", "AssumeRole", true, "Management")),
    (
        10,
        ("ec2.amazonaws.com", "DescribeInstances", true, "Management"),
    ),
    (6, ("kms.amazonaws.com", "Decrypt", true, "Management")),
    (
        5,
        ("sts.amazonaws.com", "GetCallerIdentity", true, "Management"),
    ),
    (4, ("s3.amazonaws.com", "ListBuckets", true, "Management")),
    (3, ("iam.amazonaws.com", "CreateUser", false, "Management")),
    (
        2,
        ("iam.amazonaws.com", "AttachRolePolicy", false, "Management"),
    ),
    (
        3,
        ("ec2.amazonaws.com", "RunInstances", false, "Management"),
    ),
    (
        2,
        ("signin.amazonaws.com", "ConsoleLogin", false, "Management"),
    ),
    (
        3,
        ("logs.amazonaws.com", "CreateLogStream", false, "Management"),
    ),
    (2, ("lambda.amazonaws.com", "Invoke", false, "Data")),
];

#[derive(Debug, Default)]
pub struct CloudTrail;

fn identity(rng: &mut Rng, out: &mut String, who: Who, account: &str, time: &str) {
    match who {
        Who::User => {
            let user = rng.pick(&["alice", "bob", "deploy-bot", "Mary_Major"]);
            let _ = write!(
                out,
                r#"{{"type":"IAMUser","principalId":"AIDACKCEVSQ6C2EXAMPLE","arn":"arn:aws:iam::{account}:user/{user}","accountId":"{account}","accessKeyId":"AKIAIOSFODNN7EXAMPLE","userName":"{user}"}}"#
            );
        }
        Who::Role => {
            let role = rng.pick(&[
                "Admin",
                "ReadOnly",
                "app-server-role",
                "OrganizationAccountAccessRole",
            ]);
            let session = rng.pick(&[
                "alice",
                "i-0abcd1234efgh5678",
                "terraform",
                "1710460800123456789",
            ]);
            let _ = write!(
                out,
                r#"{{"type":"AssumedRole","principalId":"AROAIDPPEZS35WEXAMPLE:{session}","arn":"arn:aws:sts::{account}:assumed-role/{role}/{session}","accountId":"{account}","accessKeyId":"ASIAIOSFODNN7EXAMPLE","sessionContext":{{"sessionIssuer":{{"type":"Role","principalId":"AROAIDPPEZS35WEXAMPLE","arn":"arn:aws:iam::{account}:role/{role}","accountId":"{account}","userName":"{role}"}},"attributes":{{"creationDate":"{time}","mfaAuthenticated":"{}"}}}}}}"#,
                rng.chance(20)
            );
        }
        Who::Service(svc) => {
            let _ = write!(out, r#"{{"type":"AWSService","invokedBy":"{svc}"}}"#);
        }
        Who::Root => {
            let _ = write!(
                out,
                r#"{{"type":"Root","principalId":"{account}","arn":"arn:aws:iam::{account}:root","accountId":"{account}","accessKeyId":""}}"#
            );
        }
    }
}

impl LogWriter for CloudTrail {
    fn begin(&mut self, _rng: &mut Rng, _clock: &mut Clock, out: &mut String) {
        out.push_str("{\"Records\":[");
    }

    fn end(&mut self, out: &mut String) {
        out.push_str("]}\n");
    }

    fn record(&mut self, index: u64, rng: &mut Rng, clock: &mut Clock, out: &mut String) {
        clock.tick(rng, 50_000);
        if index > 0 {
            out.push(',');
        }
        let (source, name, read_only, category) = rng.weighted(EVENTS);
        let region = rng.weighted(pools::REGIONS);
        let account = rng.pick(pools::ACCOUNTS);
        let time = owned(|s| clock.iso_secs(s));
        let who = match name {
            "ConsoleLogin" if rng.chance(10) => Who::Root,
            "ConsoleLogin" => Who::User,
            "AssumeRole" if rng.chance(50) => Who::Service("lambda.amazonaws.com"),
            "CreateLogStream" => Who::Service("lambda.amazonaws.com"),
            _ if rng.chance(25) => Who::User,
            _ => Who::Role,
        };
        let denied = !matches!(who, Who::Service(_)) && rng.chance(4);

        let _ = write!(out, r#"{{"eventVersion":"1.09","userIdentity":"#);
        identity(rng, out, who, account, &time);
        let _ = write!(
            out,
            r#","eventTime":"{time}","eventSource":"{source}","eventName":"{name}","awsRegion":"{region}","sourceIPAddress":"#
        );
        match who {
            Who::Service(svc) => json::string(out, svc),
            _ => {
                let mut ip = String::with_capacity(40);
                pools::client_ip(rng, &mut ip, 8);
                json::string(out, &ip);
            }
        }
        out.push_str(",\"userAgent\":");
        match who {
            Who::Service(svc) => json::string(out, svc),
            _ if name == "ConsoleLogin" => json::string(
                out,
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
            ),
            _ => json::string(out, rng.weighted(USER_AGENTS)),
        }
        if denied {
            let _ = write!(
                out,
                r#","errorCode":"AccessDenied","errorMessage":"User: arn:aws:sts::{account}:assumed-role/ReadOnly/alice is not authorized to perform: {}:{name} because no identity-based policy allows the {}:{name} action""#,
                source.trim_end_matches(".amazonaws.com"),
                source.trim_end_matches(".amazonaws.com"),
            );
        }
        out.push_str(",\"requestParameters\":");
        let key = rng.pick(&[
            "reports/2024/q1.csv",
            "uploads/avatar 42.png",
            "data/part-00000.parquet",
        ]);
        match name {
            "GetObject" | "PutObject" => {
                let _ = write!(
                    out,
                    r#"{{"bucketName":"amzn-s3-demo-bucket","Host":"amzn-s3-demo-bucket.s3.{region}.amazonaws.com","key":"{key}"}}"#
                );
            }
            "AssumeRole" => {
                let _ = write!(
                    out,
                    r#"{{"roleArn":"arn:aws:iam::{account}:role/app-server-role","roleSessionName":"session-{}","durationSeconds":3600}}"#,
                    rng.below(10_000)
                );
            }
            "DescribeInstances" => out.push_str(
                r#"{"instancesSet":{},"filterSet":{"items":[{"name":"instance-state-name","valueSet":{"items":[{"value":"running"}]}}]}}"#,
            ),
            "Decrypt" => {
                let _ = write!(
                    out,
                    r#"{{"encryptionAlgorithm":"SYMMETRIC_DEFAULT","encryptionContext":{{"aws:lambda:FunctionArn":"arn:aws:lambda:{region}:{account}:function:checkout"}}}}"#
                );
            }
            "CreateUser" => {
                let _ = write!(out, r#"{{"userName":"svc-{}"}}"#, rng.below(1000));
            }
            "AttachRolePolicy" => out.push_str(
                r#"{"roleName":"app-server-role","policyArn":"arn:aws:iam::aws:policy/AdministratorAccess"}"#,
            ),
            "RunInstances" => out.push_str(
                r#"{"instancesSet":{"items":[{"imageId":"ami-0abcdef1234567890","minCount":1,"maxCount":1}]},"instanceType":"t3.micro","monitoring":{"enabled":false},"disableApiTermination":false}"#,
            ),
            "CreateLogStream" => out.push_str(
                r#"{"logGroupName":"/aws/lambda/checkout","logStreamName":"2024/03/15/[$LATEST]0123456789abcdef0123456789abcdef"}"#,
            ),
            "Invoke" => {
                let _ = write!(
                    out,
                    r#"{{"functionName":"arn:aws:lambda:{region}:{account}:function:checkout","invocationType":"RequestResponse"}}"#
                );
            }
            _ => out.push_str("null"),
        }
        out.push_str(",\"responseElements\":");
        match (name, denied) {
            (_, true) => out.push_str("null"),
            ("AssumeRole", _) => {
                let _ = write!(
                    out,
                    r#"{{"credentials":{{"accessKeyId":"ASIAIOSFODNN7EXAMPLE","sessionToken":"IQoJb3JpZ2luX2VjEXAMPLE{}","expiration":"Mar 15, 2024, 1:00:00 AM"}},"assumedRoleUser":{{"assumedRoleId":"AROAIDPPEZS35WEXAMPLE:session","arn":"arn:aws:sts::{account}:assumed-role/app-server-role/session"}}}}"#,
                    rng.hex_string(32)
                );
            }
            ("ConsoleLogin", _) => out.push_str(r#"{"ConsoleLogin":"Success"}"#),
            ("CreateUser", _) => {
                let _ = write!(
                    out,
                    r#"{{"user":{{"path":"/","userName":"svc-x","userId":"AIDAJ45Q7YFFAREXAMPLE","arn":"arn:aws:iam::{account}:user/svc-x","createDate":"{time}"}}}}"#
                );
            }
            ("RunInstances", _) => {
                let _ = write!(
                    out,
                    r#"{{"requestId":"{}","reservationId":"r-0123456789abcdef0","ownerId":"{account}","instancesSet":{{"items":[{{"instanceId":"i-0{}","imageId":"ami-0abcdef1234567890","instanceState":{{"code":0,"name":"pending"}},"privateIpAddress":"10.0.1.23"}}]}}}}"#,
                    rng.hex_string(8),
                    rng.hex_string(16)
                );
            }
            ("PutObject", _) => {
                let _ = write!(
                    out,
                    r#"{{"x-amz-server-side-encryption":"AES256","x-amz-version-id":"{}"}}"#,
                    rng.hex_string(32)
                );
            }
            _ => out.push_str("null"),
        }
        if name == "ConsoleLogin" {
            let _ = write!(
                out,
                r#","additionalEventData":{{"LoginTo":"https://console.aws.amazon.com/console/home?state=hashArgs%23&isauthcode=true","MobileVersion":"No","MFAUsed":"{}"}}"#,
                if rng.chance(70) { "Yes" } else { "No" }
            );
        }
        if category == "Data" && source == "s3.amazonaws.com" {
            let _ = write!(
                out,
                r#","additionalEventData":{{"SignatureVersion":"SigV4","CipherSuite":"TLS_AES_128_GCM_SHA256","bytesTransferredIn":{},"AuthenticationMethod":"AuthHeader","x-amz-id-2":"{}=","bytesTransferredOut":{}}}"#,
                if name == "PutObject" {
                    rng.skewed(10, 10_000_000)
                } else {
                    0
                },
                rng.hex_string(60),
                if name == "GetObject" {
                    rng.skewed(10, 10_000_000)
                } else {
                    0
                },
            );
        }
        let request_id = owned(|s| pools::uuid(rng, s));
        let event_id = owned(|s| pools::uuid(rng, s));
        let _ = write!(
            out,
            r#","requestID":"{request_id}","eventID":"{event_id}","readOnly":{read_only}"#
        );
        if category == "Data" && source == "s3.amazonaws.com" {
            let _ = write!(
                out,
                r#","resources":[{{"type":"AWS::S3::Object","ARN":"arn:aws:s3:::amzn-s3-demo-bucket/{key}"}},{{"accountId":"{account}","type":"AWS::S3::Bucket","ARN":"arn:aws:s3:::amzn-s3-demo-bucket"}}]"#
            );
        }
        let event_type = if name == "ConsoleLogin" {
            "AwsConsoleSignIn"
        } else {
            "AwsApiCall"
        };
        let _ = write!(
            out,
            r#","eventType":"{event_type}","managementEvent":{},"recipientAccountId":"{account}""#,
            category == "Management"
        );
        if matches!(who, Who::Service(_)) {
            out.push_str(r#","sharedEventID":""#);
            pools::uuid(rng, out);
            out.push('"');
        }
        let _ = write!(out, r#","eventCategory":"{category}""#);
        if !matches!(who, Who::Service(_)) {
            let _ = write!(
                out,
                r#","tlsDetails":{{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256","clientProvidedHostHeader":"{}.{region}.amazonaws.com"}}"#,
                source.trim_end_matches(".amazonaws.com")
            );
        }
        out.push('}');
    }
}
