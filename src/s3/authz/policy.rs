//! Bucket policies in AWS's JSON policy language: parsing (every mistake is a
//! `MalformedPolicy` naming the statement and field at fault) and evaluation
//! against one request — [`Policy::evaluate`] answers `Deny` when any matching
//! statement denies (explicit Deny wins), `Allow` when one allows, else
//! `NotApplicable` (what ACLs may still grant).
//!
//! Supported: `Version` (`2012-10-17`, with policy variables such as
//! `${aws:username}`, or `2008-10-17`), `Statement` (one or a list) with `Sid`,
//! `Effect`, `Principal` (`*`, `{"AWS": ...}` or `{"CanonicalUser": ...}` naming users as
//! `arn:aws:iam::darkroom:user/NAME` — any account id is accepted — or the bare
//! name, S3 keys by access key id, the root as `arn:aws:iam::darkroom:root`),
//! `Action` / `NotAction` (`s3:GetObject`, `s3:Get*`, `s3:*`, `*`), `Resource` /
//! `NotResource` (`arn:aws:s3:::bucket`, `arn:aws:s3:::bucket/prefix*`), and
//! `Condition` with the String*, `IpAddress` / `NotIpAddress`, `Bool` and `Null`
//! operators (`...IfExists` too) on any key the request gives (see
//! [`super::Context`]).

use std::collections::HashMap;
use std::net::IpAddr;

use serde_json::Value;

use super::Caller;

/// A policy's mistake: the statement and field, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

fn err<T>(at: &str, what: impl std::fmt::Display) -> Result<T, PolicyError> {
    Err(PolicyError(format!("{at}: {what}")))
}

/// What a policy says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    NotApplicable,
}

/// A parsed bucket policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    variables: bool,
    statements: Vec<Statement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Statement {
    allow: bool,
    principal: Principals,
    actions: Matcher,
    resources: Matcher,
    conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Principals {
    Anyone,
    /// `user:NAME`, `key:ACCESSKEY`, `root`.
    Named(Vec<String>),
}

/// Patterns, and whether the statement applies to what they do *not* match.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Matcher {
    patterns: Vec<String>,
    negated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Condition {
    op: Op,
    if_exists: bool,
    /// Lowercase condition key (`aws:sourceip`).
    key: String,
    values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    IpAddress,
    NotIpAddress,
    Bool,
    Null,
}

impl Op {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "StringEquals" => Self::StringEquals,
            "StringNotEquals" => Self::StringNotEquals,
            "StringEqualsIgnoreCase" => Self::StringEqualsIgnoreCase,
            "StringNotEqualsIgnoreCase" => Self::StringNotEqualsIgnoreCase,
            "StringLike" => Self::StringLike,
            "StringNotLike" => Self::StringNotLike,
            "IpAddress" => Self::IpAddress,
            "NotIpAddress" => Self::NotIpAddress,
            "Bool" => Self::Bool,
            "Null" => Self::Null,
            _ => return None,
        })
    }

    /// Whether the operator is true of a key the request does not have.
    fn holds_when_missing(self) -> bool {
        matches!(
            self,
            Self::StringNotEquals
                | Self::StringNotEqualsIgnoreCase
                | Self::StringNotLike
                | Self::NotIpAddress
        )
    }
}

/// The request facts a policy is evaluated against.
pub struct Request<'a> {
    pub caller: &'a Caller,
    /// `s3:GetObject`.
    pub action: &'a str,
    /// `arn:aws:s3:::bucket` or `arn:aws:s3:::bucket/key`.
    pub resource: &'a str,
    /// Condition keys, lowercase (`aws:sourceip`, `s3:prefix`), and their values.
    pub keys: &'a HashMap<String, Vec<String>>,
}

/// A string or a list of strings, as the policy language allows.
fn strings(at: &str, v: &Value) -> Result<Vec<String>, PolicyError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                _ => err(at, "expected a string or a list of strings"),
            })
            .collect(),
        Value::Bool(b) => Ok(vec![b.to_string()]),
        Value::Number(n) => Ok(vec![n.to_string()]),
        _ => err(at, "expected a string or a list of strings"),
    }
}

impl Policy {
    /// Parses and checks `text` as the policy of `bucket`.
    pub fn parse(text: &str, bucket: &str) -> Result<Self, PolicyError> {
        let doc: Value =
            serde_json::from_str(text).map_err(|e| PolicyError(format!("the policy is not JSON: {e}")))?;
        let Value::Object(doc) = doc else {
            return err("policy", "expected a JSON object");
        };
        let mut variables = false;
        let mut statements = None;
        for (k, v) in &doc {
            match k.as_str() {
                "Version" => match v.as_str() {
                    Some("2012-10-17") => variables = true,
                    Some("2008-10-17") => variables = false,
                    _ => return err("Version", "must be \"2012-10-17\" or \"2008-10-17\""),
                },
                "Id" => {}
                "Statement" => statements = Some(v),
                other => return err(other, "unknown policy field (Version, Id, Statement)"),
            }
        }
        let list: Vec<&Value> = match statements {
            None => return err("Statement", "missing required field"),
            Some(Value::Array(items)) => items.iter().collect(),
            Some(one @ Value::Object(_)) => vec![one],
            Some(_) => return err("Statement", "expected a statement or a list of statements"),
        };
        if list.is_empty() {
            return err("Statement", "the policy has no statements");
        }
        let statements = list
            .iter()
            .enumerate()
            .map(|(i, s)| Statement::parse(&format!("Statement[{i}]"), s, bucket))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            variables,
            statements,
        })
    }

    /// What the policy says about `req`.
    pub fn evaluate(&self, req: &Request<'_>) -> Decision {
        let mut allowed = false;
        for s in &self.statements {
            if s.applies(req, self.variables) {
                if !s.allow {
                    return Decision::Deny;
                }
                allowed = true;
            }
        }
        if allowed {
            Decision::Allow
        } else {
            Decision::NotApplicable
        }
    }

    /// Whether the policy grants anything to anyone (anonymous included)
    /// without a condition that narrows who (source address, user, account).
    pub fn is_public(&self) -> bool {
        const NARROWING: [&str; 8] = [
            "aws:sourceip",
            "aws:sourcevpc",
            "aws:sourcevpce",
            "aws:principalaccount",
            "aws:principalorgid",
            "aws:userid",
            "aws:username",
            "aws:principalarn",
        ];
        self.statements.iter().any(|s| {
            s.allow
                && s.principal == Principals::Anyone
                && !s.conditions.iter().any(|c| NARROWING.contains(&c.key.as_str()))
        })
    }
}

impl Statement {
    fn parse(at: &str, v: &Value, bucket: &str) -> Result<Self, PolicyError> {
        let Value::Object(fields) = v else {
            return err(at, "expected a JSON object");
        };
        let (mut effect, mut principal, mut actions, mut resources) = (None, None, None, None);
        let mut conditions = Vec::new();
        for (k, v) in fields {
            let here = format!("{at}.{k}");
            match k.as_str() {
                "Sid" => {}
                "Effect" => {
                    effect = Some(match v.as_str() {
                        Some("Allow") => true,
                        Some("Deny") => false,
                        _ => return err(&here, "must be \"Allow\" or \"Deny\""),
                    });
                }
                "Principal" => principal = Some(parse_principal(&here, v)?),
                "NotPrincipal" => return err(&here, "NotPrincipal is not supported; use Principal"),
                "Action" | "NotAction" => {
                    if actions.is_some() {
                        return err(&here, "give Action or NotAction, not both");
                    }
                    actions = Some(parse_actions(&here, v, k == "NotAction")?);
                }
                "Resource" | "NotResource" => {
                    if resources.is_some() {
                        return err(&here, "give Resource or NotResource, not both");
                    }
                    resources = Some(parse_resources(&here, v, k == "NotResource", bucket)?);
                }
                "Condition" => conditions = parse_conditions(&here, v)?,
                other => return err(&here, format!("unknown statement field {other:?}")),
            }
        }
        let missing = |field: &str| PolicyError(format!("{at}: missing required field {field}"));
        Ok(Self {
            allow: effect.ok_or_else(|| missing("Effect"))?,
            principal: principal.ok_or_else(|| missing("Principal"))?,
            actions: actions.ok_or_else(|| missing("Action"))?,
            resources: resources.ok_or_else(|| missing("Resource"))?,
            conditions,
        })
    }

    fn applies(&self, req: &Request<'_>, variables: bool) -> bool {
        if !self.principal.matches(req.caller) {
            return false;
        }
        let action = self
            .actions
            .patterns
            .iter()
            .any(|p| glob(&p.to_ascii_lowercase(), &req.action.to_ascii_lowercase()));
        if action == self.actions.negated {
            return false;
        }
        let resource = self.resources.patterns.iter().any(|p| {
            let pattern = if variables {
                substitute(p, req.keys)
            } else {
                Some(p.clone())
            };
            pattern.is_some_and(|p| glob(&p, req.resource))
        });
        if resource == self.resources.negated {
            return false;
        }
        self.conditions.iter().all(|c| c.holds(req.keys, variables))
    }
}

impl Principals {
    fn matches(&self, caller: &Caller) -> bool {
        let names = match self {
            Principals::Anyone => return true,
            Principals::Named(names) => names,
        };
        names.iter().any(|n| match caller {
            Caller::Root => n == "root",
            Caller::User { who, access_key } => {
                n.strip_prefix("user:") == Some(who.user.as_str())
                    || n.strip_prefix("key:") == Some(access_key.as_str())
            }
            Caller::Anonymous => false,
        })
    }
}

fn parse_principal(at: &str, v: &Value) -> Result<Principals, PolicyError> {
    let listed = match v {
        Value::String(s) if s == "*" => return Ok(Principals::Anyone),
        Value::Object(map) => {
            let mut all = Vec::new();
            for (k, v) in map {
                // Canonical ids are user names (and the root's), so both read alike.
                if k != "AWS" && k != "CanonicalUser" {
                    return err(
                        &format!("{at}.{k}"),
                        "only \"AWS\" and \"CanonicalUser\" principals exist here",
                    );
                }
                all.extend(strings(&format!("{at}.{k}"), v)?);
            }
            all
        }
        _ => return err(at, "expected \"*\" or {\"AWS\": [...]}"),
    };
    if listed.iter().any(|p| p == "*") {
        return Ok(Principals::Anyone);
    }
    let named = listed
        .iter()
        .map(|p| principal_name(p).ok_or_else(|| PolicyError(format!("{at}: invalid principal {p:?} (use arn:aws:iam::darkroom:user/NAME, a user name or an access key id)"))))
        .collect::<Result<_, _>>()?;
    Ok(Principals::Named(named))
}

/// `user:NAME`, `key:ACCESSKEY` or `root` for one principal string.
fn principal_name(p: &str) -> Option<String> {
    if let Some(rest) = p.strip_prefix("arn:aws:iam::") {
        let (_account, what) = rest.split_once(':')?;
        if what == "root" {
            return Some("root".into());
        }
        let name = what.strip_prefix("user/")?;
        return (!name.is_empty()).then(|| format!("user:{name}"));
    }
    if p == crate::users::ROOT_ID {
        return Some("root".into());
    }
    if p.starts_with("DRK") && p.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Some(format!("key:{p}"));
    }
    let valid = !p.is_empty()
        && p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    valid.then(|| format!("user:{p}"))
}

fn parse_actions(at: &str, v: &Value, negated: bool) -> Result<Matcher, PolicyError> {
    let patterns = strings(at, v)?;
    if patterns.is_empty() {
        return err(at, "no actions");
    }
    for p in &patterns {
        let ok = p == "*"
            || p.get(..3).is_some_and(|s| s.eq_ignore_ascii_case("s3:"))
                && p.len() > 3
                && p[3..]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | '?'));
        if !ok {
            return err(
                at,
                format!("{p:?} is not an S3 action (s3:GetObject, s3:Get*, s3:*)"),
            );
        }
    }
    Ok(Matcher { patterns, negated })
}

fn parse_resources(at: &str, v: &Value, negated: bool, bucket: &str) -> Result<Matcher, PolicyError> {
    let patterns = strings(at, v)?;
    if patterns.is_empty() {
        return err(at, "no resources");
    }
    for p in &patterns {
        if p == "*" {
            continue;
        }
        let Some(rest) = p.strip_prefix("arn:aws:s3:::") else {
            return err(
                at,
                format!("{p:?} is not an S3 resource (arn:aws:s3:::{bucket}/...)"),
            );
        };
        let named = rest.split('/').next().unwrap_or_default();
        if !glob(named, bucket) {
            return err(
                at,
                format!("{p:?}: the policy of bucket {bucket:?} can only name its own resources"),
            );
        }
    }
    Ok(Matcher { patterns, negated })
}

fn parse_conditions(at: &str, v: &Value) -> Result<Vec<Condition>, PolicyError> {
    let Value::Object(ops) = v else {
        return err(at, "expected {\"Operator\": {\"key\": value}}");
    };
    let mut out = Vec::new();
    for (name, block) in ops {
        let here = format!("{at}.{name}");
        let (base, if_exists) = match name.strip_suffix("IfExists") {
            Some(b) => (b, true),
            None => (name.as_str(), false),
        };
        let op = Op::parse(base).ok_or_else(|| {
            PolicyError(format!(
                "{here}: unknown or unsupported condition operator (String*, IpAddress, NotIpAddress, Bool, Null)"
            ))
        })?;
        let Value::Object(keys) = block else {
            return err(&here, "expected {\"key\": value}");
        };
        for (key, values) in keys {
            let at_key = format!("{here}.{key}");
            if !key.contains(':') {
                return err(&at_key, "a condition key has a prefix (aws:SourceIp, s3:prefix)");
            }
            let values = strings(&at_key, values)?;
            if matches!(op, Op::IpAddress | Op::NotIpAddress) {
                for v in &values {
                    if Cidr::parse(v).is_none() {
                        return err(&at_key, format!("{v:?} is not an IP address or CIDR block"));
                    }
                }
            }
            if matches!(op, Op::Bool | Op::Null)
                && values
                    .iter()
                    .any(|v| !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false"))
            {
                return err(&at_key, "expected true or false");
            }
            out.push(Condition {
                op,
                if_exists,
                key: key.to_ascii_lowercase(),
                values,
            });
        }
    }
    Ok(out)
}

impl Condition {
    fn holds(&self, keys: &HashMap<String, Vec<String>>, variables: bool) -> bool {
        let present = keys.get(&self.key).filter(|v| !v.is_empty());
        if self.op == Op::Null {
            let want_missing = self.values.iter().any(|v| v.eq_ignore_ascii_case("true"));
            return present.is_none() == want_missing;
        }
        let Some(given) = present else {
            return self.if_exists || self.op.holds_when_missing();
        };
        let wanted: Vec<String> = self
            .values
            .iter()
            .filter_map(|v| {
                if variables {
                    substitute(v, keys)
                } else {
                    Some(v.clone())
                }
            })
            .collect();
        // Any of the request's values against any of the condition's.
        let any = |f: &dyn Fn(&str, &str) -> bool| given.iter().any(|g| wanted.iter().any(|w| f(g, w)));
        match self.op {
            Op::StringEquals => any(&|g, w| g == w),
            Op::StringNotEquals => !any(&|g, w| g == w),
            Op::StringEqualsIgnoreCase => any(&|g, w| g.eq_ignore_ascii_case(w)),
            Op::StringNotEqualsIgnoreCase => !any(&|g, w| g.eq_ignore_ascii_case(w)),
            Op::StringLike => any(&|g, w| glob(w, g)),
            Op::StringNotLike => !any(&|g, w| glob(w, g)),
            Op::IpAddress => any(&|g, w| Cidr::parse(w).is_some_and(|c| c.contains(g))),
            Op::NotIpAddress => !any(&|g, w| Cidr::parse(w).is_some_and(|c| c.contains(g))),
            Op::Bool => any(&|g, w| g.eq_ignore_ascii_case(w)),
            Op::Null => unreachable!("handled above"),
        }
    }
}

/// Replaces `${key}` with the request's value of `key` (`${*}`, `${?}`, `${$}`
/// are the literal characters); `None` when a named key is missing, so the
/// pattern matches nothing.
fn substitute(pattern: &str, keys: &HashMap<String, Vec<String>>) -> Option<String> {
    let mut out = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}')?;
        let name = &after[..end];
        match name {
            "*" | "?" | "$" => out.push_str(name),
            _ => out.push_str(keys.get(&name.to_ascii_lowercase())?.first()?),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// `*` matches any run of characters (`/` included), `?` any one character.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// An address block: `10.0.0.0/8`, `2001:db8::/32`, or one address.
struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    fn parse(text: &str) -> Option<Self> {
        let (addr, bits) = match text.split_once('/') {
            Some((a, b)) => (a.parse::<IpAddr>().ok()?, Some(b.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        (bits <= max).then_some(Self { net: addr, bits })
    }

    fn contains(&self, addr: &str) -> bool {
        let Ok(addr) = addr.parse::<IpAddr>() else {
            return false;
        };
        let addr = match (addr, self.net) {
            (IpAddr::V6(v6), IpAddr::V4(_)) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            _ => addr,
        };
        let (a, n, width) = match (addr, self.net) {
            (IpAddr::V4(a), IpAddr::V4(n)) => (u128::from(a.to_bits()), u128::from(n.to_bits()), 32),
            (IpAddr::V6(a), IpAddr::V6(n)) => (a.to_bits(), n.to_bits(), 128),
            _ => return false,
        };
        let host = width - u32::from(self.bits);
        if host >= 128 {
            return true;
        }
        (a >> host) == (n >> host)
    }
}
