//! What a failure says about its cause: the likely cause of an error code, the IAM action
//! an AccessDenied message names, and the permissions each method needs. Shared by the
//! canary and by `rekey run`'s breaker message.

use crate::plan::classify::Method;

/// The likely cause of an error code that stops every request of its kind.
pub fn likely_cause(code: &str) -> &'static str {
    match code {
        "KMS.DisabledException" => "the KMS key is disabled (enable it: aws kms enable-key)",
        "KMS.NotFoundException" => "the KMS key does not exist in this account and region",
        "KMS.KMSInvalidStateException" => "the KMS key is pending deletion or import (cancel the deletion)",
        "KMS.InvalidKeyUsageException" => "the key is not a symmetric ENCRYPT_DECRYPT key",
        "AccessDenied" => "a missing IAM or key-policy permission, or a bucket policy that denies it",
        "NoSuchBucket" => "the bucket does not exist (wrong region or endpoint?)",
        "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "ExpiredToken" | "InvalidToken" => {
            "the credentials are wrong or expired"
        }
        _ => "S3 or KMS refuses every request of this kind",
    }
}

/// The permissions a method needs.
pub fn needs(m: Method) -> &'static str {
    match m {
        Method::Update => "s3:UpdateObjectEncryption, kms:ReEncrypt*, kms:Encrypt, kms:Decrypt and kms:GenerateDataKey",
        Method::Copy | Method::MultipartCopy => {
            "s3:GetObject, s3:PutObject, s3:GetObjectTagging and kms:GenerateDataKey"
        }
    }
}

/// The IAM action an AccessDenied message names ("... not authorized to perform: s3:X ..."), if any.
pub fn named_action(message: &str) -> Option<String> {
    message
        .split(|c: char| c.is_whitespace() || c == '"' || c == ',' || c == ';' || c == '(' || c == ')')
        .find(|w| {
            (w.starts_with("s3:") || w.starts_with("kms:"))
                && w.len() > 4
                && w.split_once(':').is_some_and(|(_, a)| a.chars().all(|c| c.is_ascii_alphanumeric() || c == '*'))
        })
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_action_an_access_denied_message_names_is_found() {
        let m = "403 AccessDenied: User: arn:aws:iam::123456789012:user/x is not authorized to perform: s3:UpdateObjectEncryption on resource: \"arn:aws:s3:::b/k\" because no identity-based policy allows the s3:UpdateObjectEncryption action";
        assert_eq!(named_action(m).as_deref(), Some("s3:UpdateObjectEncryption"));
        assert_eq!(
            named_action("not authorized to perform: kms:GenerateDataKey").as_deref(),
            Some("kms:GenerateDataKey")
        );
        assert_eq!(named_action("403 AccessDenied: Access Denied"), None);
        assert_eq!(named_action("arn:aws:s3:::b/k"), None);
    }

    #[test]
    fn a_key_problem_is_told_apart_from_a_permission() {
        assert!(likely_cause("KMS.DisabledException").contains("disabled"));
        assert!(likely_cause("AccessDenied").contains("permission"));
        assert_eq!(likely_cause("SomethingNew"), "S3 or KMS refuses every request of this kind");
    }
}
