//! The filter language of management-api.md §4: parsing a JSON filter into a typed tree (with every
//! problem reported at its JSON path), and evaluating that tree on a (person, installation) pair.
//!
//! Parsing needs the account's attribute definitions (a custom attribute is typed by its
//! definition, §4.3), passed in as a lookup so that this module does no I/O. The tree is public:
//! the store backends and any audience index translate it; [`Filter::matches`] is the reference
//! semantics they must agree with.
//!
//! Values are compared in their canonical stored forms (people.md §8.1): `DATE` as
//! `yyyy-MM-dd` and `DATE_TIME` as `yyyy-MM-ddTHH:mm:ssZ`, whose byte order is chronological, so
//! operands are canonicalised once at parse time and no stored value is parsed while evaluating.

use serde_json::Value;

use crate::domain::{AttributeDefinition, AttributeScope, AttributeType, Installation, Person, SchemaField};
use crate::validate::{email_key, normalize_phone};
use crate::values::{format_date, format_date_time, parse_date, parse_date_time};

/// management-api.md §4.4: at most this nesting depth of filter objects.
pub const MAX_DEPTH: usize = 10;
/// management-api.md §4.4: at most this many conditions (field operators) in one filter.
pub const MAX_CONDITIONS: usize = 200;
/// management-api.md §4.4: a filter's compact JSON is at most this many bytes.
pub const MAX_JSON_BYTES: usize = 65_536;
/// management-api.md §4.4: `$in` / `$nin` / `$all` take at most this many values.
pub const MAX_LIST_OPERANDS: usize = 1000;
/// management-api.md §4.1: `$and` / `$or` take 1–100 sub-filters.
pub const MAX_BRANCHES: usize = 100;

/// A parsed, typed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `{}`: matches everything.
    All,
    /// Every sub-filter matches (also the implicit conjunction of an object's members).
    And(Vec<Filter>),
    /// At least one sub-filter matches.
    Or(Vec<Filter>),
    /// The sub-filter does not match.
    Not(Box<Filter>),
    /// One operator on one field.
    Cond(Condition),
}

/// One operator applied to one field.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: Field,
    pub op: Op,
}

/// What a condition reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Person(PersonField),
    /// A person custom attribute, typed by its definition.
    PersonCustom {
        name: String,
        attr_type: AttributeType,
    },
    Installation(InstallationField),
    /// An installation custom attribute, typed by its definition.
    InstallationCustom {
        name: String,
        attr_type: AttributeType,
    },
    /// A field of a list-of-objects item, inside `$elemMatch`.
    Item {
        name: String,
        attr_type: AttributeType,
    },
}

/// The standard person fields of §4.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PersonField {
    ExternalUserId,
    FirstName,
    MiddleName,
    LastName,
    Gender,
    Birthday,
    Type,
    Phones,
    Emails,
    Tags,
}

/// The installation fields of §4.3 (prefix `installation.`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstallationField {
    PushRegId,
    PushServiceType,
    Os,
    DeviceManufacturer,
    DeviceModel,
    DeviceName,
    Language,
    DeviceTimezoneOffset,
    ApplicationUserId,
    OsVersion,
    AppVersion,
    SdkVersion,
    RegEnabled,
    NotificationsEnabled,
    DeviceSecure,
    IsPrimary,
    HasPushServiceToken,
    CreatedAt,
    LastSeenAt,
}

/// The kind of a field (§4.3), which decides its operators and operand types (§4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Enum(&'static [&'static str]),
    Decimal,
    Boolean,
    Date,
    DateTime,
    Version,
    /// A set of strings; `phones` and `emails` compare in their own way.
    Multi(MultiField),
    ListOfObjects,
}

/// Which multi-valued person field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultiField {
    Phones,
    Emails,
    Tags,
}

const GENDERS: &[&str] = &["Male", "Female"];
const PERSON_TYPES: &[&str] = &["LEAD", "CUSTOMER"];
const PUSH_SERVICE_TYPES: &[&str] = &["Firebase", "GCM", "HMS", "APNS"];

impl PersonField {
    const ALL: [(&'static str, PersonField); 10] = [
        ("externalUserId", PersonField::ExternalUserId),
        ("firstName", PersonField::FirstName),
        ("middleName", PersonField::MiddleName),
        ("lastName", PersonField::LastName),
        ("gender", PersonField::Gender),
        ("birthday", PersonField::Birthday),
        ("type", PersonField::Type),
        ("phones", PersonField::Phones),
        ("emails", PersonField::Emails),
        ("tags", PersonField::Tags),
    ];

    /// The field of a wire name.
    pub fn parse(name: &str) -> Option<PersonField> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    /// Its kind (§4.3).
    pub fn kind(self) -> Kind {
        match self {
            PersonField::ExternalUserId | PersonField::FirstName | PersonField::MiddleName | PersonField::LastName => {
                Kind::String
            }
            PersonField::Gender => Kind::Enum(GENDERS),
            PersonField::Birthday => Kind::Date,
            PersonField::Type => Kind::Enum(PERSON_TYPES),
            PersonField::Phones => Kind::Multi(MultiField::Phones),
            PersonField::Emails => Kind::Multi(MultiField::Emails),
            PersonField::Tags => Kind::Multi(MultiField::Tags),
        }
    }
}

impl InstallationField {
    const ALL: [(&'static str, InstallationField); 19] = [
        ("pushRegId", InstallationField::PushRegId),
        ("pushServiceType", InstallationField::PushServiceType),
        ("os", InstallationField::Os),
        ("deviceManufacturer", InstallationField::DeviceManufacturer),
        ("deviceModel", InstallationField::DeviceModel),
        ("deviceName", InstallationField::DeviceName),
        ("language", InstallationField::Language),
        ("deviceTimezoneOffset", InstallationField::DeviceTimezoneOffset),
        ("applicationUserId", InstallationField::ApplicationUserId),
        ("osVersion", InstallationField::OsVersion),
        ("appVersion", InstallationField::AppVersion),
        ("sdkVersion", InstallationField::SdkVersion),
        ("regEnabled", InstallationField::RegEnabled),
        ("notificationsEnabled", InstallationField::NotificationsEnabled),
        ("deviceSecure", InstallationField::DeviceSecure),
        ("isPrimary", InstallationField::IsPrimary),
        ("hasPushServiceToken", InstallationField::HasPushServiceToken),
        ("createdAt", InstallationField::CreatedAt),
        ("lastSeenAt", InstallationField::LastSeenAt),
    ];

    /// The field of a wire name (without the `installation.` prefix).
    pub fn parse(name: &str) -> Option<InstallationField> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    /// Its kind (§4.3).
    pub fn kind(self) -> Kind {
        use InstallationField::*;
        match self {
            PushRegId | Os | DeviceManufacturer | DeviceModel | DeviceName | Language | DeviceTimezoneOffset
            | ApplicationUserId => Kind::String,
            PushServiceType => Kind::Enum(PUSH_SERVICE_TYPES),
            OsVersion | AppVersion | SdkVersion => Kind::Version,
            RegEnabled | NotificationsEnabled | DeviceSecure | IsPrimary | HasPushServiceToken => Kind::Boolean,
            CreatedAt | LastSeenAt => Kind::DateTime,
        }
    }
}

fn custom_kind(attr_type: AttributeType) -> Kind {
    match attr_type {
        AttributeType::String => Kind::String,
        AttributeType::Decimal => Kind::Decimal,
        AttributeType::Boolean => Kind::Boolean,
        AttributeType::Date => Kind::Date,
        AttributeType::DateTime => Kind::DateTime,
        AttributeType::ListOfObjects => Kind::ListOfObjects,
    }
}

impl Field {
    /// The kind of the field.
    pub fn kind(&self) -> Kind {
        match self {
            Field::Person(f) => f.kind(),
            Field::Installation(f) => f.kind(),
            Field::PersonCustom { attr_type, .. }
            | Field::InstallationCustom { attr_type, .. }
            | Field::Item { attr_type, .. } => custom_kind(*attr_type),
        }
    }
}

/// A typed operand, canonicalised at parse time.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// STRING, ENUM, VERSION (exact), tags, and `pushRegId` (lowercased).
    Str(String),
    /// An email, as its comparison key.
    EmailKey(String),
    /// A phone, normalised (digits without `+`).
    Phone(String),
    Num(f64),
    Bool(bool),
    /// A DATE, canonical `yyyy-MM-dd`.
    Date(String),
    /// A DATE_TIME: canonical text and milliseconds since the epoch.
    DateTime {
        text: String,
        millis: i64,
    },
}

/// An ordered comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Cmp {
    fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Cmp::Gt => ord == Greater,
            Cmp::Gte => ord != Less,
            Cmp::Lt => ord == Less,
            Cmp::Lte => ord != Greater,
        }
    }
}

/// An operator with its operand(s) (§4.4).
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Eq(Operand),
    Ne(Operand),
    In(Vec<Operand>),
    Nin(Vec<Operand>),
    Compare(Cmp, Operand),
    Exists(bool),
    /// Lowercased prefix (for `phones`: digits with separators and `+` removed).
    StartsWith(String),
    /// Lowercased substring.
    Contains(String),
    All(Vec<Operand>),
    ElemMatch(Box<Filter>),
}

/// One problem found in a filter: the JSON path and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub path: String,
    pub message: String,
}

/// Looks up the account's attribute definitions while parsing.
pub trait Definitions {
    /// The definition of `name` in `scope`, if any.
    fn definition(&self, scope: AttributeScope, name: &str) -> Option<&AttributeDefinition>;
}

impl Definitions for [AttributeDefinition] {
    fn definition(&self, scope: AttributeScope, name: &str) -> Option<&AttributeDefinition> {
        self.iter().find(|d| d.scope == scope && d.name == name)
    }
}

impl Definitions for Vec<AttributeDefinition> {
    fn definition(&self, scope: AttributeScope, name: &str) -> Option<&AttributeDefinition> {
        self.as_slice().definition(scope, name)
    }
}

impl Filter {
    /// Parses `value` (found at JSON path `path`, e.g. `filter`) against `defs`. Every problem is
    /// reported (management-api.md §2), each at its own path.
    pub fn parse(value: &Value, defs: &dyn Definitions, path: &str) -> Result<Filter, Vec<FilterError>> {
        let mut parser = Parser {
            defs,
            errors: Vec::new(),
            conditions: 0,
        };
        if let Ok(text) = serde_json::to_string(value)
            && text.len() > MAX_JSON_BYTES
        {
            return Err(vec![FilterError {
                path: path.to_string(),
                message: format!("filter is larger than {MAX_JSON_BYTES} bytes"),
            }]);
        }
        let filter = parser.filter(value, path, 1, None);
        if parser.conditions > MAX_CONDITIONS {
            parser.error(
                path,
                format!("filter has {} conditions, at most {MAX_CONDITIONS}", parser.conditions),
            );
        }
        if parser.errors.is_empty() {
            Ok(filter)
        } else {
            Err(parser.errors)
        }
    }

    /// Whether this filter matches everything (`{}`).
    pub fn is_all(&self) -> bool {
        matches!(self, Filter::All)
    }

    /// The conjunction of two filters, simplified where one matches everything.
    pub fn and(self, other: Filter) -> Filter {
        match (self, other) {
            (Filter::All, f) | (f, Filter::All) => f,
            (Filter::And(mut a), Filter::And(b)) => {
                a.extend(b);
                Filter::And(a)
            }
            (Filter::And(mut a), f) => {
                a.push(f);
                Filter::And(a)
            }
            (f, g) => Filter::And(vec![f, g]),
        }
    }

    /// Whether the filter reads any `installation.*` field.
    pub fn uses_installation(&self) -> bool {
        match self {
            Filter::All => false,
            Filter::And(v) | Filter::Or(v) => v.iter().any(Filter::uses_installation),
            Filter::Not(f) => f.uses_installation(),
            Filter::Cond(c) => matches!(c.field, Field::Installation(_) | Field::InstallationCustom { .. }),
        }
    }

    /// management-api.md §4.2: whether the (person, installation) pair matches. `installation` is
    /// `None` when a person without installations in scope is evaluated (people search): every
    /// `installation.*` field is then absent.
    pub fn matches(&self, person: &Person, installation: Option<&Installation>) -> bool {
        self.eval(&Subject::Pair { person, installation })
    }

    fn eval(&self, subject: &Subject<'_>) -> bool {
        match self {
            Filter::All => true,
            Filter::And(v) => v.iter().all(|f| f.eval(subject)),
            Filter::Or(v) => v.iter().any(|f| f.eval(subject)),
            Filter::Not(f) => !f.eval(subject),
            Filter::Cond(c) => c.eval(subject),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

struct Parser<'a> {
    defs: &'a dyn Definitions,
    errors: Vec<FilterError>,
    conditions: usize,
}

impl Parser<'_> {
    fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(FilterError {
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// A filter object. `schema` is set inside `$elemMatch`: field names are the item's fields.
    fn filter(&mut self, value: &Value, path: &str, depth: usize, schema: Option<&[SchemaField]>) -> Filter {
        if depth > MAX_DEPTH {
            self.error(path, format!("filter is nested deeper than {MAX_DEPTH} levels"));
            return Filter::All;
        }
        let Value::Object(members) = value else {
            self.error(path, "a filter must be a JSON object");
            return Filter::All;
        };
        let mut parts = Vec::with_capacity(members.len());
        for (name, operand) in members {
            let member_path = format!("{path}.{name}");
            match name.as_str() {
                "$and" | "$or" => {
                    let Some(items) = operand.as_array() else {
                        self.error(&member_path, format!("{name} takes an array of filters"));
                        continue;
                    };
                    if items.is_empty() || items.len() > MAX_BRANCHES {
                        self.error(&member_path, format!("{name} takes 1 to {MAX_BRANCHES} filters"));
                        continue;
                    }
                    let subs: Vec<Filter> = items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| self.filter(item, &format!("{member_path}[{i}]"), depth + 1, schema))
                        .collect();
                    parts.push(if name == "$and" {
                        Filter::And(subs)
                    } else {
                        Filter::Or(subs)
                    });
                }
                "$not" => {
                    let sub = self.filter(operand, &member_path, depth + 1, schema);
                    parts.push(Filter::Not(Box::new(sub)));
                }
                other if other.starts_with('$') => {
                    self.error(&member_path, format!("unknown filter operator {other}"));
                }
                field_name => {
                    let Some(field) = self.field(field_name, &member_path, schema) else {
                        continue;
                    };
                    self.conditions_of(field, operand, &member_path, depth, &mut parts);
                }
            }
        }
        match parts.len() {
            0 => Filter::All,
            1 => parts.pop().unwrap_or(Filter::All),
            _ => Filter::And(parts),
        }
    }

    /// §4.3: resolves a field name.
    fn field(&mut self, name: &str, path: &str, schema: Option<&[SchemaField]>) -> Option<Field> {
        if let Some(schema) = schema {
            return match schema.iter().find(|f| f.name == name) {
                Some(f) => Some(Field::Item {
                    name: f.name.clone(),
                    attr_type: f.field_type,
                }),
                None => {
                    self.error(path, format!("{name} is not a field of the list's items"));
                    None
                }
            };
        }
        if let Some(rest) = name.strip_prefix("installation.") {
            if let Some(attr) = rest.strip_prefix("customAttributes.") {
                return self.custom(AttributeScope::Installation, attr, path);
            }
            return match InstallationField::parse(rest) {
                Some(f) => Some(Field::Installation(f)),
                None => {
                    self.error(path, format!("unknown installation field {rest}"));
                    None
                }
            };
        }
        if let Some(f) = PersonField::parse(name) {
            return Some(Field::Person(f));
        }
        let attr = name.strip_prefix("customAttributes.").unwrap_or(name);
        self.custom(AttributeScope::Person, attr, path)
    }

    fn custom(&mut self, scope: AttributeScope, name: &str, path: &str) -> Option<Field> {
        let Some(def) = self.defs.definition(scope, name) else {
            let what = match scope {
                AttributeScope::Person => "person",
                AttributeScope::Installation => "installation",
            };
            self.error(path, format!("no {what} custom attribute named {name} is defined"));
            return None;
        };
        let attr_type = def.attr_type;
        let name = def.name.clone();
        Some(match scope {
            AttributeScope::Person => Field::PersonCustom { name, attr_type },
            AttributeScope::Installation => Field::InstallationCustom { name, attr_type },
        })
    }

    /// `{"field": literal}` or `{"field": {"$op": v, ...}}`: one condition per operator.
    fn conditions_of(&mut self, field: Field, operand: &Value, path: &str, depth: usize, out: &mut Vec<Filter>) {
        let ops = match operand {
            Value::Object(ops) if ops.keys().next().is_some_and(|k| k.starts_with('$')) => ops,
            Value::Object(_) => {
                self.error(path, "expected a value or an object of operators");
                return;
            }
            literal => {
                self.conditions += 1;
                if let Some(op) = self.op(&field, "$eq", literal, path, depth) {
                    out.push(Filter::Cond(Condition { field, op }));
                }
                return;
            }
        };
        if ops.is_empty() {
            self.error(path, "an operator object needs at least one operator");
            return;
        }
        for (name, value) in ops {
            self.conditions += 1;
            let op_path = format!("{path}.{name}");
            if let Some(op) = self.op(&field, name, value, &op_path, depth) {
                out.push(Filter::Cond(Condition {
                    field: field.clone(),
                    op,
                }));
            }
        }
    }

    /// One operator of §4.4, checked against the field's kind.
    fn op(&mut self, field: &Field, name: &str, value: &Value, path: &str, depth: usize) -> Option<Op> {
        let kind = field.kind();
        if !allowed(kind, name) {
            if !KNOWN_OPERATORS.contains(&name) {
                self.error(path, format!("unknown operator {name}"));
            } else {
                self.error(
                    path,
                    format!("operator {name} is not allowed for a {} field", kind_name(kind)),
                );
            }
            return None;
        }
        match name {
            "$eq" => self.operand(kind, value, path).map(Op::Eq),
            "$ne" => self.operand(kind, value, path).map(Op::Ne),
            "$in" | "$nin" | "$all" => {
                let Some(items) = value.as_array() else {
                    self.error(path, format!("{name} takes an array"));
                    return None;
                };
                if (name != "$nin" && items.is_empty()) || items.len() > MAX_LIST_OPERANDS {
                    let min = if name == "$nin" { 0 } else { 1 };
                    self.error(path, format!("{name} takes {min} to {MAX_LIST_OPERANDS} values"));
                    return None;
                }
                let before = self.errors.len();
                let operands: Vec<Operand> = items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| self.operand(kind, v, &format!("{path}[{i}]")))
                    .collect();
                if self.errors.len() > before {
                    return None;
                }
                Some(match name {
                    "$in" => Op::In(operands),
                    "$nin" => Op::Nin(operands),
                    _ => Op::All(operands),
                })
            }
            "$gt" | "$gte" | "$lt" | "$lte" => {
                let cmp = match name {
                    "$gt" => Cmp::Gt,
                    "$gte" => Cmp::Gte,
                    "$lt" => Cmp::Lt,
                    _ => Cmp::Lte,
                };
                self.operand(kind, value, path).map(|o| Op::Compare(cmp, o))
            }
            "$exists" => match value {
                Value::Bool(b) => Some(Op::Exists(*b)),
                _ => {
                    self.error(path, "$exists takes true or false");
                    None
                }
            },
            "$startsWith" | "$contains" => {
                let Some(s) = value.as_str() else {
                    self.error(path, format!("{name} takes a string"));
                    return None;
                };
                let needle = if kind == Kind::Multi(MultiField::Phones) {
                    s.chars()
                        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '+'))
                        .collect()
                } else {
                    s.to_lowercase()
                };
                Some(if name == "$startsWith" {
                    Op::StartsWith(needle)
                } else {
                    Op::Contains(needle)
                })
            }
            "$elemMatch" => {
                let schema = match field {
                    Field::PersonCustom { name, .. } => self.defs.definition(AttributeScope::Person, name),
                    Field::InstallationCustom { name, .. } => self.defs.definition(AttributeScope::Installation, name),
                    _ => None,
                }
                .and_then(|d| d.object_schema.clone())
                .unwrap_or_default();
                if !value.is_object() {
                    self.error(path, "$elemMatch takes a filter object");
                    return None;
                }
                let before = self.errors.len();
                let sub = self.filter(value, path, depth + 1, Some(&schema));
                if self.errors.len() > before {
                    return None;
                }
                Some(Op::ElemMatch(Box::new(sub)))
            }
            _ => None,
        }
    }

    /// An operand of the field's type (§4.4 rules).
    fn operand(&mut self, kind: Kind, value: &Value, path: &str) -> Option<Operand> {
        if value.is_null() {
            self.error(path, "null is never a valid operand");
            return None;
        }
        let result = match kind {
            Kind::String | Kind::Version => value
                .as_str()
                .map(|s| Operand::Str(s.to_string()))
                .ok_or_else(|| "expected a string".to_string()),
            Kind::Enum(values) => match value.as_str() {
                Some(s) if values.contains(&s) => Ok(Operand::Str(s.to_string())),
                _ => Err(format!("expected one of {}", values.join(", "))),
            },
            Kind::Decimal => value
                .as_f64()
                .filter(|_| value.is_number())
                .map(Operand::Num)
                .ok_or_else(|| "expected a number".to_string()),
            Kind::Boolean => value
                .as_bool()
                .map(Operand::Bool)
                .ok_or_else(|| "expected true or false".to_string()),
            Kind::Date => value
                .as_str()
                .and_then(parse_date)
                .map(|d| Operand::Date(format_date(d)))
                .ok_or_else(|| "expected a date (yyyy-MM-dd)".to_string()),
            Kind::DateTime => value
                .as_str()
                .and_then(parse_date_time)
                .map(|t| Operand::DateTime {
                    text: format_date_time(t),
                    millis: (t.unix_timestamp_nanos() / 1_000_000) as i64,
                })
                .ok_or_else(|| "expected a date-time (yyyy-MM-ddTHH:mm:ssZ)".to_string()),
            Kind::Multi(MultiField::Tags) => value
                .as_str()
                .map(|s| Operand::Str(s.to_string()))
                .ok_or_else(|| "expected a string".to_string()),
            Kind::Multi(MultiField::Emails) => value
                .as_str()
                .map(|s| Operand::EmailKey(email_key(s.trim())))
                .ok_or_else(|| "expected a string".to_string()),
            Kind::Multi(MultiField::Phones) => match value.as_str() {
                Some(s) => normalize_phone(s)
                    .map(Operand::Phone)
                    .map_err(|_| "not a valid phone number".to_string()),
                None => Err("expected a string".to_string()),
            },
            Kind::ListOfObjects => Err("a list of objects takes only $elemMatch or $exists".to_string()),
        };
        match result {
            Ok(op) => Some(op),
            Err(message) => {
                self.error(path, message);
                None
            }
        }
    }
}

const KNOWN_OPERATORS: &[&str] = &[
    "$eq",
    "$ne",
    "$in",
    "$nin",
    "$gt",
    "$gte",
    "$lt",
    "$lte",
    "$exists",
    "$startsWith",
    "$contains",
    "$all",
    "$elemMatch",
];

/// §4.4: the operators allowed for a kind.
fn allowed(kind: Kind, op: &str) -> bool {
    let ops: &[&str] = match kind {
        Kind::String => &["$eq", "$ne", "$in", "$nin", "$exists", "$startsWith", "$contains"],
        Kind::Enum(_) => &["$eq", "$ne", "$in", "$nin", "$exists"],
        Kind::Decimal => &["$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists"],
        Kind::Boolean => &["$eq", "$ne", "$exists"],
        Kind::Date | Kind::DateTime => &["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$exists"],
        Kind::Version => &[
            "$eq",
            "$ne",
            "$in",
            "$nin",
            "$gt",
            "$gte",
            "$lt",
            "$lte",
            "$exists",
            "$startsWith",
        ],
        Kind::Multi(_) => &["$eq", "$in", "$all", "$nin", "$exists", "$startsWith"],
        Kind::ListOfObjects => &["$elemMatch", "$exists"],
    };
    ops.contains(&op)
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::String => "STRING",
        Kind::Enum(_) => "ENUM",
        Kind::Decimal => "DECIMAL",
        Kind::Boolean => "BOOLEAN",
        Kind::Date => "DATE",
        Kind::DateTime => "DATE_TIME",
        Kind::Version => "VERSION",
        Kind::Multi(_) => "multi-valued",
        Kind::ListOfObjects => "LIST_OF_OBJECTS",
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------

/// What a filter is evaluated on: a pair, or one list item inside `$elemMatch`.
enum Subject<'a> {
    Pair {
        person: &'a Person,
        installation: Option<&'a Installation>,
    },
    Item(&'a serde_json::Map<String, Value>),
}

/// A field's value on a (person, installation) pair, as the reference evaluation reads it. Public
/// so that an audience index can evaluate a condition once per distinct stored value
/// ([`Condition::holds`]) instead of once per pair, with exactly these semantics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue<'a> {
    Absent,
    Str(&'a str),
    /// A string compared lowercase (`pushRegId`).
    LowerStr(&'a str),
    Num(f64),
    Bool(bool),
    /// Canonical `yyyy-MM-dd` / `yyyy-MM-ddTHH:mm:ssZ` text.
    DateText(&'a str),
    Millis(i64),
    Version(&'a str),
    Multi(MultiField, &'a [String]),
    Tags(&'a std::collections::BTreeSet<String>),
    List(&'a [Value]),
}

/// A custom attribute's stored value as a filter of `attr_type` reads it: a value of another
/// JSON type is absent.
pub fn custom_value(value: Option<&Value>, attr_type: AttributeType) -> FieldValue<'_> {
    let Some(value) = value else {
        return FieldValue::Absent;
    };
    match (attr_type, value) {
        (AttributeType::String, Value::String(s)) => FieldValue::Str(s),
        (AttributeType::Decimal, Value::Number(n)) => n.as_f64().map_or(FieldValue::Absent, FieldValue::Num),
        (AttributeType::Boolean, Value::Bool(b)) => FieldValue::Bool(*b),
        (AttributeType::Date | AttributeType::DateTime, Value::String(s)) => FieldValue::DateText(s),
        (AttributeType::ListOfObjects, Value::Array(items)) => FieldValue::List(items),
        // A stored value of another type (defined after it was stored) is treated as absent.
        _ => FieldValue::Absent,
    }
}

fn opt_str(s: &Option<String>) -> FieldValue<'_> {
    s.as_deref().map_or(FieldValue::Absent, FieldValue::Str)
}

fn opt_bool(b: Option<bool>) -> FieldValue<'static> {
    b.map_or(FieldValue::Absent, FieldValue::Bool)
}

impl Field {
    /// The field's value on a (person, installation) pair, as [`Filter::matches`] reads it
    /// (`installation` `None`: every installation field absent). An `Item` field is absent.
    pub fn value_on<'a>(&self, person: &'a Person, installation: Option<&'a Installation>) -> FieldValue<'a> {
        self.get(&Subject::Pair { person, installation })
    }

    fn get<'a>(&self, subject: &Subject<'a>) -> FieldValue<'a> {
        match (self, subject) {
            (Field::Item { name, attr_type }, Subject::Item(obj)) => custom_value(obj.get(name), *attr_type),
            (Field::Item { .. }, _) => FieldValue::Absent,
            (_, Subject::Item(_)) => FieldValue::Absent,
            (Field::Person(f), Subject::Pair { person, .. }) => person_field(person, *f),
            (Field::PersonCustom { name, attr_type }, Subject::Pair { person, .. }) => {
                custom_value(person.custom_attributes.get(name), *attr_type)
            }
            (Field::Installation(f), Subject::Pair { installation, .. }) => {
                installation.map_or(FieldValue::Absent, |i| installation_field(i, *f))
            }
            (Field::InstallationCustom { name, attr_type }, Subject::Pair { installation, .. }) => installation
                .map_or(FieldValue::Absent, |i| {
                    custom_value(i.custom_attributes.get(name), *attr_type)
                }),
        }
    }
}

fn person_field(p: &Person, f: PersonField) -> FieldValue<'_> {
    match f {
        PersonField::ExternalUserId => opt_str(&p.external_user_id),
        PersonField::FirstName => opt_str(&p.first_name),
        PersonField::MiddleName => opt_str(&p.middle_name),
        PersonField::LastName => opt_str(&p.last_name),
        PersonField::Gender => p.gender.map_or(FieldValue::Absent, |g| FieldValue::Str(g.as_str())),
        PersonField::Birthday => p.birthday.as_deref().map_or(FieldValue::Absent, FieldValue::DateText),
        PersonField::Type => FieldValue::Str(p.person_type.as_str()),
        PersonField::Phones => FieldValue::Multi(MultiField::Phones, &p.phones),
        PersonField::Emails => FieldValue::Multi(MultiField::Emails, &p.emails),
        PersonField::Tags => FieldValue::Tags(&p.tags),
    }
}

fn installation_field(i: &Installation, f: InstallationField) -> FieldValue<'_> {
    use InstallationField::*;
    let s = &i.system;
    match f {
        PushRegId => FieldValue::LowerStr(&i.push_reg_id),
        PushServiceType => i
            .push_service_type
            .map_or(FieldValue::Absent, |t| FieldValue::Str(t.as_str())),
        Os => opt_str(&s.os),
        DeviceManufacturer => opt_str(&s.device_manufacturer),
        DeviceModel => opt_str(&s.device_model),
        DeviceName => opt_str(&s.device_name),
        Language => opt_str(&s.language),
        DeviceTimezoneOffset => opt_str(&s.device_timezone_offset),
        ApplicationUserId => opt_str(&i.application_user_id),
        OsVersion => s.os_version.as_deref().map_or(FieldValue::Absent, FieldValue::Version),
        AppVersion => s.app_version.as_deref().map_or(FieldValue::Absent, FieldValue::Version),
        SdkVersion => s.sdk_version.as_deref().map_or(FieldValue::Absent, FieldValue::Version),
        RegEnabled => FieldValue::Bool(i.reg_enabled),
        NotificationsEnabled => opt_bool(s.notifications_enabled),
        DeviceSecure => opt_bool(s.device_secure),
        IsPrimary => FieldValue::Bool(i.is_primary),
        HasPushServiceToken => FieldValue::Bool(i.push_service_token.is_some()),
        CreatedAt => FieldValue::Millis(i.created_at),
        LastSeenAt => FieldValue::Millis(i.last_seen_at),
    }
}

impl Condition {
    fn eval(&self, subject: &Subject<'_>) -> bool {
        self.holds(&self.field.get(subject))
    }

    /// Whether the condition holds for a pair whose field has value `got` (the reference
    /// semantics of §4.4 on one value; [`Filter::matches`] is this on every condition).
    pub fn holds(&self, got: &FieldValue<'_>) -> bool {
        let got = *got;
        match &self.op {
            Op::Eq(o) => equals(&got, o),
            Op::Ne(o) => !equals(&got, o),
            Op::In(os) => os.iter().any(|o| equals(&got, o)),
            Op::Nin(os) => !os.iter().any(|o| equals(&got, o)),
            Op::All(os) => os.iter().all(|o| equals(&got, o)),
            Op::Compare(cmp, o) => compare(&got, o).is_some_and(|ord| cmp.holds(ord)),
            Op::Exists(want) => exists(&got) == *want,
            Op::StartsWith(prefix) => text_test(&got, |s| s.starts_with(prefix.as_str())),
            Op::Contains(needle) => text_test(&got, |s| s.contains(needle.as_str())),
            Op::ElemMatch(sub) => match got {
                FieldValue::List(items) => items
                    .iter()
                    .any(|item| item.as_object().is_some_and(|obj| sub.eval(&Subject::Item(obj)))),
                _ => false,
            },
        }
    }
}

fn exists(got: &FieldValue<'_>) -> bool {
    match got {
        FieldValue::Absent => false,
        FieldValue::Multi(_, v) => !v.is_empty(),
        FieldValue::Tags(v) => !v.is_empty(),
        FieldValue::List(v) => !v.is_empty(),
        _ => true,
    }
}

impl FieldValue<'_> {
    /// `$eq` of the reference semantics (for multi-valued fields: contains).
    pub fn equals(&self, o: &Operand) -> bool {
        equals(self, o)
    }
}

/// `$eq` (for multi-valued fields: contains).
fn equals(got: &FieldValue<'_>, o: &Operand) -> bool {
    match (got, o) {
        (FieldValue::Str(s) | FieldValue::Version(s), Operand::Str(x)) => *s == x.as_str(),
        (FieldValue::LowerStr(s), Operand::Str(x)) => s.to_lowercase() == x.to_lowercase(),
        (FieldValue::Num(n), Operand::Num(x)) => n == x,
        (FieldValue::Bool(b), Operand::Bool(x)) => b == x,
        (FieldValue::DateText(s), Operand::Date(x)) => *s == x.as_str(),
        (FieldValue::DateText(s), Operand::DateTime { text, .. }) => *s == text.as_str(),
        (FieldValue::Millis(m), Operand::DateTime { millis, .. }) => m == millis,
        (FieldValue::Tags(tags), Operand::Str(x)) => tags.contains(x.as_str()),
        (FieldValue::Multi(MultiField::Emails, v), Operand::EmailKey(k)) => v.iter().any(|e| email_key(e) == *k),
        (FieldValue::Multi(MultiField::Phones, v), Operand::Phone(p)) => v.iter().any(|e| e == p),
        (FieldValue::Multi(MultiField::Tags, v), Operand::Str(x)) => v.iter().any(|e| e == x),
        _ => false,
    }
}

/// Ordered comparison of the value against the operand; `None` when it is not defined.
fn compare(got: &FieldValue<'_>, o: &Operand) -> Option<std::cmp::Ordering> {
    match (got, o) {
        (FieldValue::Num(n), Operand::Num(x)) => n.partial_cmp(x),
        (FieldValue::DateText(s), Operand::Date(x)) => Some(s.as_bytes().cmp(x.as_bytes())),
        (FieldValue::DateText(s), Operand::DateTime { text, .. }) => Some(s.as_bytes().cmp(text.as_bytes())),
        (FieldValue::Millis(m), Operand::DateTime { millis, .. }) => Some(m.cmp(millis)),
        (FieldValue::Version(v), Operand::Str(x)) => compare_versions(v, x),
        _ => None,
    }
}

/// `$startsWith` / `$contains`: case-insensitive on strings and versions; for multi-valued fields,
/// some element passes (phones compare their digits as stored).
fn text_test(got: &FieldValue<'_>, test: impl Fn(&str) -> bool) -> bool {
    match got {
        FieldValue::Str(s) | FieldValue::Version(s) | FieldValue::LowerStr(s) => test(&s.to_lowercase()),
        FieldValue::Multi(MultiField::Phones, v) => v.iter().any(|p| test(p)),
        FieldValue::Multi(_, v) => v.iter().any(|e| test(&e.to_lowercase())),
        FieldValue::Tags(tags) => tags.iter().any(|t| test(&t.to_lowercase())),
        _ => false,
    }
}

/// §4.4 VERSION order: the longest prefix matching `[0-9]+(\.[0-9]+)*`, compared component by
/// component as integers, missing components 0. `None` when either side has no such prefix.
pub fn compare_versions(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    let a = version_components(a)?;
    let b = version_components(b)?;
    let n = a.len().max(b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        match x.cmp(&y) {
            std::cmp::Ordering::Equal => {}
            other => return Some(other),
        }
    }
    Some(std::cmp::Ordering::Equal)
}

/// The numeric components of a version's leading `[0-9]+(\.[0-9]+)*`; components beyond
/// `u128` saturate, which keeps the order of any realistic version.
fn version_components(s: &str) -> Option<Vec<u128>> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            break;
        }
        let n = rest[..digits].bytes().fold(0u128, |acc, d| {
            acc.saturating_mul(10).saturating_add(u128::from(d - b'0'))
        });
        out.push(n);
        rest = &rest[digits..];
        // A dot continues the version only when a digit follows it.
        match rest.strip_prefix('.') {
            Some(after) if after.bytes().next().is_some_and(|c| c.is_ascii_digit()) => rest = after,
            _ => break,
        }
    }
    if out.is_empty() { None } else { Some(out) }
}

#[cfg(test)]
mod tests;
