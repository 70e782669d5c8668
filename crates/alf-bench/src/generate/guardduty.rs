//! GuardDuty findings as exported to S3: one finding (JSON object) per line, in the
//! finding layout AWS documents (schemaVersion 2.0, resource, service.action,
//! severity, title and description).

use std::fmt::Write;

use super::json;
use super::owned;
use crate::clock::Clock;
use crate::pools;
use crate::rng::Rng;

/// Finding type, severity, action type, title.
type FindingSpec = (&'static str, f64, &'static str, &'static str);

/// Weighted mix of finding types.
const FINDINGS: &[(u32, FindingSpec)] = &[
    (
        25,
        (
            "Recon:EC2/PortProbeUnprotectedPort",
            2.0,
            "PORT_PROBE",
            "Unprotected port on EC2 instance i-0abcd1234efgh5678 is being probed.",
        ),
    ),
    (
        20,
        (
            "UnauthorizedAccess:EC2/SSHBruteForce",
            5.0,
            "NETWORK_CONNECTION",
            "SSH brute force attacks against i-0abcd1234efgh5678.",
        ),
    ),
    (
        10,
        (
            "CryptoCurrency:EC2/BitcoinTool.B!DNS",
            8.0,
            "DNS_REQUEST",
            "EC2 instance i-0abcd1234efgh5678 is querying a domain name that is associated with Bitcoin-related activity.",
        ),
    ),
    (
        10,
        (
            "Recon:IAMUser/MaliciousIPCaller.Custom",
            5.0,
            "AWS_API_CALL",
            "Reconnaissance API GetBucketAcl was invoked from an IP address on a custom threat list.",
        ),
    ),
    (
        8,
        (
            "Discovery:S3/AnomalousBehavior",
            2.0,
            "AWS_API_CALL",
            "An API commonly used to discover S3 objects was invoked in an anomalous way.",
        ),
    ),
    (
        5,
        (
            "Backdoor:EC2/C&CActivity.B",
            8.0,
            "NETWORK_CONNECTION",
            "EC2 instance i-0abcd1234efgh5678 is communicating with a Command & Control server.",
        ),
    ),
];

/// Appends one GuardDuty finding as a JSON line.
pub fn record(rng: &mut Rng, clock: &mut Clock, out: &mut String) {
    clock.tick(rng, 2_000_000);
    let (kind, severity, action, title) = rng.weighted(FINDINGS);
    let account = rng.pick(pools::ACCOUNTS);
    let region = rng.weighted(pools::REGIONS);
    let id = rng.hex_string(32);
    let detector = "12abc34d567e8fa901bc2d34eexample";
    let mut created = String::with_capacity(24);
    clock
        .minus(rng.skewed(1_000_000, 86_400_000_000) as i64)
        .iso_millis(&mut created);
    let updated = owned(|s| clock.iso_millis(s));
    let remote_ip = owned(|s| pools::public_ipv4(rng, s));
    let private_ip = owned(|s| pools::private_ipv4(rng, s));

    let _ = write!(
        out,
        r#"{{"schemaVersion":"2.0","accountId":"{account}","region":"{region}","partition":"aws","id":"{id}","arn":"arn:aws:guardduty:{region}:{account}:detector/{detector}/finding/{id}","type":"{kind}","resource":"#
    );
    if action == "AWS_API_CALL" {
        let _ = write!(
            out,
            r#"{{"resourceType":"AccessKey","accessKeyDetails":{{"accessKeyId":"ASIAIOSFODNN7EXAMPLE","principalId":"AROAIDPPEZS35WEXAMPLE:alice","userName":"alice","userType":"AssumedRole"}}}}"#
        );
    } else {
        let _ = write!(
            out,
            r#"{{"resourceType":"Instance","instanceDetails":{{"instanceId":"i-0abcd1234efgh5678","instanceType":"t3.large","launchTime":"2024-02-01T10:00:00.000Z","platform":null,"productCodes":[],"iamInstanceProfile":{{"arn":"arn:aws:iam::{account}:instance-profile/app-server","id":"AIPAJ45Q7YFFAREXAMPLE"}},"networkInterfaces":[{{"ipv6Addresses":[],"networkInterfaceId":"eni-0a1b2c3d4e5f60718","privateDnsName":"ip-10-0-1-23.ec2.internal","privateIpAddress":"{private_ip}","privateIpAddresses":[{{"privateDnsName":"ip-10-0-1-23.ec2.internal","privateIpAddress":"{private_ip}"}}],"publicDnsName":"ec2-198-51-100-7.compute-1.amazonaws.com","publicIp":"198.51.100.7","securityGroups":[{{"groupId":"sg-0123456789abcdef0","groupName":"web"}}],"subnetId":"subnet-0123456789abcdef0","vpcId":"vpc-0a1b2c3d4e5f67890"}}],"outpostArn":null,"tags":[{{"key":"Name","value":"web-1"}}],"instanceState":"running","availabilityZone":"{region}a","imageId":"ami-0abcdef1234567890","imageDescription":"Amazon Linux 2023"}}}}"#
        );
    }
    let _ = write!(
        out,
        r#","service":{{"serviceName":"guardduty","detectorId":"{detector}","action":{{"actionType":"{action}","#
    );
    let country = rng.pick(&["China", "Russia", "United States", "Netherlands", "Brazil"]);
    let remote = format!(
        r#""remoteIpDetails":{{"ipAddressV4":"{remote_ip}","organization":{{"asn":"{}","asnOrg":"EXAMPLE-NET","isp":"Example ISP","org":"Example Org"}},"country":{{"countryName":"{country}"}},"city":{{"cityName":""}},"geoLocation":{{"lat":39.9,"lon":116.4}}}}"#,
        rng.range(1000, 65000)
    );
    match action {
        "PORT_PROBE" => {
            let _ = write!(
                out,
                r#""portProbeAction":{{"blocked":false,"portProbeDetails":[{{"localPortDetails":{{"port":{},"portName":"Unknown"}},{remote}}}]}}"#,
                rng.pick(&[22u32, 3389, 5432, 6379])
            );
        }
        "NETWORK_CONNECTION" => {
            let _ = write!(
                out,
                r#""networkConnectionAction":{{"connectionDirection":"INBOUND","protocol":"TCP","blocked":false,"localIpDetails":{{"ipAddressV4":"{private_ip}"}},"localPortDetails":{{"port":22,"portName":"SSH"}},"remotePortDetails":{{"port":{},"portName":"Unknown"}},{remote}}}"#,
                rng.range(32768, 65535)
            );
        }
        "DNS_REQUEST" => {
            out.push_str(r#""dnsRequestAction":{"domain":"#);
            json::string(
                out,
                rng.pick(&["pool.minexmr.example", "xmr.pool.example.net"]),
            );
            out.push_str(r#","protocol":"UDP","blocked":false}"#);
        }
        _ => {
            let _ = write!(
                out,
                r#""awsApiCallAction":{{"api":"GetBucketAcl","serviceName":"s3.amazonaws.com","callerType":"Remote IP","errorCode":"AccessDenied",{remote},"affectedResources":{{"AWS::S3::Bucket":"amzn-s3-demo-bucket"}}}}"#
            );
        }
    }
    let count = rng.skewed(1, 5000);
    let _ = write!(
        out,
        r#"}},"resourceRole":"{}","additionalInfo":{{"value":"{{}}","type":"default"}},"evidence":null,"eventFirstSeen":"{created}","eventLastSeen":"{updated}","archived":false,"count":{count}}},"severity":{severity},"createdAt":"{created}","updatedAt":"{updated}","title":"#,
        if action == "AWS_API_CALL" {
            "ACTOR"
        } else {
            "TARGET"
        }
    );
    json::string(out, title);
    out.push_str(r#","description":"#);
    json::string(
        out,
        &format!(
            "{title} This finding was seen {count} times. Brute force attacks are used to gain unauthorized access."
        ),
    );
    out.push_str("}\n");
}
