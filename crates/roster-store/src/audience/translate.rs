//! A filter (management-api.md §4) as SQL over the audience index ([`super::index`]), written
//! once for both backends: the dialects differ only in placeholders, list binds, substring
//! search and booleans ([`Dialect`]). `roster_model::filter::Filter::matches` is the reference
//! semantics; a differential test in roster-store-tests compares the two on both backends.
//!
//! Shape of the SQL:
//! - A (person, installation) pair is a row of `installations i`, joined to `persons p` when a
//!   condition reads a person column and to `installation_search s` when it reads a lowercased
//!   copy or a VERSION key.
//! - A condition on a multi-valued field or a custom attribute is an uncorrelated
//!   `<owner> IN (SELECT <owner> FROM <table> WHERE account_id = … AND name = … AND <value test>)`,
//!   which the database answers from an index on (account_id, name, field, value) once per
//!   statement; tags, phones and emails use their own tables' indexes.
//! - Every condition is two-valued (never SQL NULL): a test on a nullable column is written
//!   `(c IS NOT NULL AND <test>)`, so `NOT` gives exactly the absent-value rules of §4.4
//!   (`$ne`, `$nin`, `$exists: false` and `$not` are true on an absent value).
//! - `$elemMatch` walks the list's item header rows (`h`) and tests each item field with a
//!   primary-key lookup of its row (`v`).

use roster_model::AttributeType;
use roster_model::filter::{Cmp, Condition, Field, Filter, InstallationField, Op, Operand, PersonField};
use uuid::Uuid;

use super::index::{self, LIST_HEADER, num_key, prefix_upper_bound, version_key};
use crate::columns::id;

/// The SQL dialect of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }

    /// `col` is one of the values of a list bind.
    fn in_list(self, col: &str, list: &str) -> String {
        match self {
            Dialect::Sqlite => format!("{col} IN (SELECT value FROM json_each({list}))"),
            Dialect::Postgres => format!("{col} = ANY({list})"),
        }
    }

    /// `needle` occurs in `col` (both already lowercased).
    fn contains(self, col: &str, needle: &str) -> String {
        match self {
            Dialect::Sqlite => format!("instr({col}, {needle}) > 0"),
            Dialect::Postgres => format!("strpos({col}, {needle}) > 0"),
        }
    }

    /// A condition on `col` that must not choose the index: SQLite's unary `+` keeps the planner
    /// on the primary key (people search walks persons in id order and stops at the page's end;
    /// with the account filter on another index it would read and sort the whole account).
    fn unindexed(self, col: &str) -> String {
        match self {
            Dialect::Sqlite => format!("+{col}"),
            Dialect::Postgres => col.to_string(),
        }
    }

    /// A boolean column is true.
    fn truthy(self, col: &str) -> String {
        match self {
            Dialect::Sqlite => format!("{col} = 1"),
            Dialect::Postgres => col.to_string(),
        }
    }
}

/// A bound value. Lists travel as one bind: a JSON array text on SQLite (`json_each`), an
/// array on PostgreSQL (`= ANY`).
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Text(String),
    Int(i64),
    Bool(bool),
    TextList(Vec<String>),
    IntList(Vec<i64>),
}

/// A statement with its binds; placeholder `n` is `binds[n - 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sql: String,
    pub binds: Vec<Bind>,
}

/// Which pairs are looked at: an account, and one application of it or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    pub account_id: Uuid,
    pub application_id: Option<Uuid>,
}

// ---------------------------------------------------------------------------------------------
// Compilation: the filter with constant parts folded away
// ---------------------------------------------------------------------------------------------

/// A filter with the conditions whose truth is known without data replaced by constants.
enum Expr<'f> {
    Const(bool),
    Not(Box<Expr<'f>>),
    And(Vec<Expr<'f>>),
    Or(Vec<Expr<'f>>),
    Cond(&'f Condition),
}

/// The truth of an operator on an absent value (management-api.md §4.4 rules).
fn absent_truth(op: &Op) -> bool {
    match op {
        Op::Ne(_) | Op::Nin(_) => true,
        Op::Exists(want) => !want,
        Op::All(operands) => operands.is_empty(),
        _ => false,
    }
}

fn is_installation_field(field: &Field) -> bool {
    matches!(field, Field::Installation(_) | Field::InstallationCustom { .. })
}

/// `installation_absent`: every `installation.*` field is absent (a person without
/// installations in scope, §4.2).
fn compile(filter: &Filter, installation_absent: bool) -> Expr<'_> {
    match filter {
        Filter::All => Expr::Const(true),
        Filter::Not(f) => match compile(f, installation_absent) {
            Expr::Const(b) => Expr::Const(!b),
            e => Expr::Not(Box::new(e)),
        },
        Filter::And(fs) => {
            let mut parts = Vec::new();
            for f in fs {
                match compile(f, installation_absent) {
                    Expr::Const(true) => {}
                    Expr::Const(false) => return Expr::Const(false),
                    e => parts.push(e),
                }
            }
            match parts.len() {
                0 => Expr::Const(true),
                1 => parts.pop().unwrap_or(Expr::Const(true)),
                _ => Expr::And(parts),
            }
        }
        Filter::Or(fs) => {
            let mut parts = Vec::new();
            for f in fs {
                match compile(f, installation_absent) {
                    Expr::Const(false) => {}
                    Expr::Const(true) => return Expr::Const(true),
                    e => parts.push(e),
                }
            }
            match parts.len() {
                0 => Expr::Const(false),
                1 => parts.pop().unwrap_or(Expr::Const(false)),
                _ => Expr::Or(parts),
            }
        }
        Filter::Cond(c) if installation_absent && is_installation_field(&c.field) => Expr::Const(absent_truth(&c.op)),
        Filter::Cond(c) => Expr::Cond(c),
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

const TRUE: &str = "(1 = 1)";
const FALSE: &str = "(1 = 0)";

/// How a stored value compares with an operand: the reference's value kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repr {
    /// STRING, ENUM, VERSION (exact) text.
    Str,
    /// Text compared lowercase (`pushRegId`, stored lowercase).
    LowerStr,
    /// Canonical `yyyy-MM-dd` / `yyyy-MM-ddTHH:mm:ssZ` text.
    DateText,
    /// A [`num_key`].
    Num,
    Bool,
    /// Milliseconds since the epoch.
    Millis,
    Phone,
    EmailKey,
}

/// The bind of an operand compared with a value of `repr`; `None` when they never equal or
/// order (the reference answers false).
fn operand_bind(repr: Repr, o: &Operand) -> Option<Bind> {
    Some(match (repr, o) {
        (Repr::Str, Operand::Str(s)) => Bind::Text(s.clone()),
        (Repr::LowerStr, Operand::Str(s)) => Bind::Text(s.to_lowercase()),
        (Repr::DateText, Operand::Date(s)) => Bind::Text(s.clone()),
        (Repr::DateText, Operand::DateTime { text, .. }) => Bind::Text(text.clone()),
        (Repr::Num, Operand::Num(f)) => Bind::Int(num_key(*f)),
        (Repr::Bool, Operand::Bool(b)) => Bind::Bool(*b),
        (Repr::Millis, Operand::DateTime { millis, .. }) => Bind::Int(*millis),
        (Repr::Phone, Operand::Phone(p)) => Bind::Text(p.clone()),
        (Repr::EmailKey, Operand::EmailKey(k)) => Bind::Text(k.clone()),
        _ => return None,
    })
}

/// Whether `$startsWith` / `$contains` apply to values of `repr` (the reference's `text_test`).
fn is_textual(repr: Repr) -> bool {
    matches!(repr, Repr::Str | Repr::LowerStr | Repr::Phone | Repr::EmailKey)
}

fn list_bind(binds: Vec<Bind>) -> Option<Bind> {
    if binds.iter().all(|b| matches!(b, Bind::Text(_))) {
        Some(Bind::TextList(
            binds
                .into_iter()
                .filter_map(|b| match b {
                    Bind::Text(s) => Some(s),
                    _ => None,
                })
                .collect(),
        ))
    } else if binds.iter().all(|b| matches!(b, Bind::Int(_))) {
        Some(Bind::IntList(
            binds
                .into_iter()
                .filter_map(|b| match b {
                    Bind::Int(n) => Some(n),
                    _ => None,
                })
                .collect(),
        ))
    } else {
        None
    }
}

fn cmp_sql(cmp: Cmp) -> &'static str {
    match cmp {
        Cmp::Gt => ">",
        Cmp::Gte => ">=",
        Cmp::Lt => "<",
        Cmp::Lte => "<=",
    }
}

/// Where the lowercased copy of a STRING value lives.
#[derive(Clone, Copy)]
enum Lower {
    /// No case-insensitive operator applies.
    None,
    /// A column of the pair row.
    Column(&'static str),
    /// A reserved person row (`$firstName`, ...).
    Reserved(&'static str),
}

/// A field stored in a column of the pair row.
struct Column {
    raw: &'static str,
    repr: Repr,
    lower: Lower,
    /// The VERSION sort key column.
    key: Option<&'static str>,
    /// Whether `raw` lives in `persons p` (rather than `installations i` / `installation_search s`).
    person_row: bool,
}

/// A multi-valued person field: its child table and value column.
struct Keys {
    table: &'static str,
    col: &'static str,
    repr: Repr,
    /// Where `$startsWith` looks: the same column, or reserved lowercased rows.
    prefix: Lower,
}

/// A custom attribute's value rows.
#[derive(Clone, Copy)]
struct Values {
    table: &'static str,
    /// The owner column of the table (`person_id`, `push_reg_id`).
    owner: &'static str,
}

const PERSON_VALUES: Values = Values {
    table: "person_attribute_values",
    owner: "person_id",
};
const INSTALLATION_VALUES: Values = Values {
    table: "installation_attribute_values",
    owner: "push_reg_id",
};

/// The typed value column of an attribute type, and how it compares.
fn value_column(attr_type: AttributeType) -> (&'static str, Repr) {
    match attr_type {
        AttributeType::String => ("value_text", Repr::Str),
        AttributeType::Date | AttributeType::DateTime => ("value_text", Repr::DateText),
        AttributeType::Decimal => ("value_num", Repr::Num),
        AttributeType::Boolean => ("value_bool", Repr::Bool),
        // Lists have no value of their own (header rows are null everywhere).
        AttributeType::ListOfObjects => ("value_text", Repr::Str),
    }
}

/// The operators that [`Renderer::positive`] answers; the others are their negations.
enum Positive<'a> {
    Eq(&'a Operand),
    In(&'a [Operand]),
    Compare(Cmp, &'a Operand),
    StartsWith(&'a str),
    Contains(&'a str),
    Exists,
}

/// Where a condition is rendered.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    /// The SQL expression of the pair's person id.
    pid: &'a str,
    /// Inside `$elemMatch`: the values table whose header row `h` is the item.
    item: Option<Values>,
}

struct Renderer {
    dialect: Dialect,
    binds: Vec<Bind>,
    /// The placeholder of the account id (bound once, first).
    account: String,
    /// A condition reads `persons p`.
    person_row: bool,
    /// A condition reads `installation_search s`.
    search_row: bool,
}

impl Renderer {
    fn new(dialect: Dialect, account_id: Uuid) -> Renderer {
        let mut r = Renderer {
            dialect,
            binds: Vec::new(),
            account: String::new(),
            person_row: false,
            search_row: false,
        };
        r.account = r.bind(Bind::Text(id(account_id)));
        r
    }

    /// Binds a value; its placeholder.
    fn bind(&mut self, b: Bind) -> String {
        self.binds.push(b);
        self.dialect.placeholder(self.binds.len())
    }

    fn expr(&mut self, e: &Expr<'_>, ctx: Ctx<'_>) -> String {
        match e {
            Expr::Const(true) => TRUE.into(),
            Expr::Const(false) => FALSE.into(),
            Expr::Not(inner) => format!("(NOT {})", self.expr(inner, ctx)),
            Expr::And(parts) => {
                let parts: Vec<String> = parts.iter().map(|p| self.expr(p, ctx)).collect();
                format!("({})", parts.join(" AND "))
            }
            Expr::Or(parts) => {
                let parts: Vec<String> = parts.iter().map(|p| self.expr(p, ctx)).collect();
                format!("({})", parts.join(" OR "))
            }
            Expr::Cond(c) => self.condition(c, ctx),
        }
    }

    /// One condition: the negated operators through their positive forms.
    fn condition(&mut self, c: &Condition, ctx: Ctx<'_>) -> String {
        // A field the subject does not have (an item field outside `$elemMatch`, a pair field
        // inside it) is absent, as in the reference.
        let is_item = matches!(c.field, Field::Item { .. });
        if is_item != ctx.item.is_some() {
            return if absent_truth(&c.op) { TRUE.into() } else { FALSE.into() };
        }
        match &c.op {
            Op::Ne(o) => not(self.positive(&c.field, Positive::Eq(o), ctx)),
            Op::Nin(os) => not(self.positive(&c.field, Positive::In(os), ctx)),
            Op::Exists(false) => not(self.positive(&c.field, Positive::Exists, ctx)),
            Op::All(os) => {
                if os.is_empty() {
                    return TRUE.into();
                }
                let parts: Vec<String> = os
                    .iter()
                    .map(|o| self.positive(&c.field, Positive::Eq(o), ctx))
                    .collect();
                format!("({})", parts.join(" AND "))
            }
            Op::Eq(o) => self.positive(&c.field, Positive::Eq(o), ctx),
            Op::In(os) => self.positive(&c.field, Positive::In(os), ctx),
            Op::Compare(cmp, o) => self.positive(&c.field, Positive::Compare(*cmp, o), ctx),
            Op::Exists(true) => self.positive(&c.field, Positive::Exists, ctx),
            Op::StartsWith(p) => self.positive(&c.field, Positive::StartsWith(p), ctx),
            Op::Contains(n) => self.positive(&c.field, Positive::Contains(n), ctx),
            Op::ElemMatch(sub) => self.elem_match(&c.field, sub, ctx),
        }
    }

    fn positive(&mut self, field: &Field, p: Positive<'_>, ctx: Ctx<'_>) -> String {
        match field {
            Field::Person(f) => match person_field(*f) {
                Target::Column(col) => self.column(&col, p, ctx),
                Target::Keys(keys) => self.keys(&keys, p, ctx),
            },
            Field::Installation(InstallationField::HasPushServiceToken) => match p {
                Positive::Eq(Operand::Bool(true)) => "(i.push_service_token IS NOT NULL)".into(),
                Positive::Eq(Operand::Bool(false)) => "(i.push_service_token IS NULL)".into(),
                Positive::Exists => TRUE.into(),
                _ => FALSE.into(),
            },
            Field::Installation(f) => self.column(&installation_column(*f), p, ctx),
            Field::PersonCustom { name, attr_type } => {
                let owner = ctx.pid.to_string();
                self.values(PERSON_VALUES, &owner, name, *attr_type, p)
            }
            Field::InstallationCustom { name, attr_type } => {
                self.values(INSTALLATION_VALUES, "i.push_reg_id", name, *attr_type, p)
            }
            Field::Item { name, attr_type } => match ctx.item {
                Some(values) => self.item_value(values, name, *attr_type, p),
                None => FALSE.into(),
            },
        }
    }

    /// The test of `p` on a value column `col` (already known to be non-null where it matters),
    /// or `None` when it is false whatever the value.
    fn value_test(&mut self, col: &str, lower: Option<&str>, repr: Repr, p: &Positive<'_>) -> Option<String> {
        match p {
            Positive::Eq(o) => {
                let b = operand_bind(repr, o)?;
                let ph = self.bind(b);
                Some(format!("{col} = {ph}"))
            }
            Positive::In(os) => {
                let binds: Vec<Bind> = os.iter().filter_map(|o| operand_bind(repr, o)).collect();
                if binds.is_empty() {
                    return None;
                }
                let list = list_bind(binds)?;
                let ph = self.bind(list);
                Some(self.dialect.in_list(col, &ph))
            }
            Positive::Compare(cmp, o) => {
                if !matches!(repr, Repr::Num | Repr::DateText | Repr::Millis) {
                    return None;
                }
                let b = operand_bind(repr, o)?;
                let ph = self.bind(b);
                Some(format!("{col} {} {ph}", cmp_sql(*cmp)))
            }
            Positive::StartsWith(prefix) => {
                let lc = lower.filter(|_| is_textual(repr))?;
                Some(self.prefix_range(lc, prefix))
            }
            Positive::Contains(needle) => {
                let lc = lower.filter(|_| is_textual(repr))?;
                let ph = self.bind(Bind::Text((*needle).to_string()));
                Some(self.dialect.contains(lc, &ph))
            }
            Positive::Exists => Some(format!("{col} IS NOT NULL")),
        }
    }

    /// `col` starts with `prefix`, as an index range.
    fn prefix_range(&mut self, col: &str, prefix: &str) -> String {
        let low = self.bind(Bind::Text(prefix.to_string()));
        match prefix_upper_bound(prefix) {
            Some(upper) => {
                let high = self.bind(Bind::Text(upper));
                format!("{col} >= {low} AND {col} < {high}")
            }
            None => format!("{col} >= {low}"),
        }
    }

    /// A field in a column of the pair row.
    fn column(&mut self, col: &Column, p: Positive<'_>, ctx: Ctx<'_>) -> String {
        match (&p, col.lower) {
            (Positive::StartsWith(_) | Positive::Contains(_), Lower::Reserved(name)) => {
                let owner = ctx.pid.to_string();
                return self.reserved_lower(&owner, name, &p);
            }
            (Positive::StartsWith(_) | Positive::Contains(_), Lower::Column(lc)) if lc.starts_with("s.") => {
                self.search_row = true;
            }
            _ => {}
        }
        if let (Positive::Compare(cmp, o), Some(key_col)) = (&p, col.key) {
            // VERSION order: on the sort keys; an operand without one orders nothing.
            let Operand::Str(s) = o else { return FALSE.into() };
            let Some(key) = version_key(s) else { return FALSE.into() };
            self.search_row = true;
            let ph = self.bind(Bind::Text(key));
            return format!("({key_col} IS NOT NULL AND {key_col} {} {ph})", cmp_sql(*cmp));
        }
        if col.person_row {
            self.person_row = true;
        }
        let lower = match col.lower {
            Lower::Column(lc) => Some(lc),
            _ => None,
        };
        let guard = match p {
            Positive::StartsWith(_) | Positive::Contains(_) => lower.unwrap_or(col.raw),
            _ => col.raw,
        };
        match self.value_test(col.raw, lower, col.repr, &p) {
            Some(test) => format!("({guard} IS NOT NULL AND {test})"),
            None => FALSE.into(),
        }
    }

    /// `$startsWith` / `$contains` on a reserved lowercased person row.
    fn reserved_lower(&mut self, owner: &str, name: &str, p: &Positive<'_>) -> String {
        let test = match p {
            Positive::StartsWith(prefix) => self.prefix_range("value_lower", prefix),
            Positive::Contains(needle) => {
                let ph = self.bind(Bind::Text((*needle).to_string()));
                self.dialect.contains("value_lower", &ph)
            }
            _ => return FALSE.into(),
        };
        let name = self.bind(Bind::Text(name.to_string()));
        format!(
            "({owner} IN (SELECT person_id FROM person_attribute_values WHERE account_id = {} \
             AND name = {name} AND field = '' AND {test}))",
            self.account
        )
    }

    /// A multi-valued person field.
    fn keys(&mut self, keys: &Keys, p: Positive<'_>, ctx: Ctx<'_>) -> String {
        let pid = ctx.pid;
        if let (Positive::StartsWith(_), Lower::Reserved(name)) = (&p, keys.prefix) {
            let owner = pid.to_string();
            return self.reserved_lower(&owner, name, &p);
        }
        let test = match p {
            Positive::Exists => None,
            Positive::StartsWith(prefix) => Some(self.prefix_range(keys.col, prefix)),
            Positive::Eq(_) | Positive::In(_) => match self.value_test(keys.col, None, keys.repr, &p) {
                Some(test) => Some(test),
                None => return FALSE.into(),
            },
            Positive::Compare(..) | Positive::Contains(_) => return FALSE.into(),
        };
        let test = test.map(|t| format!(" AND {t}")).unwrap_or_default();
        format!(
            "({pid} IN (SELECT person_id FROM {} WHERE account_id = {}{test}))",
            keys.table, self.account
        )
    }

    /// A scalar or list custom attribute of a person (`owner` = the person id) or an
    /// installation (`owner` = its pushRegId).
    fn values(&mut self, values: Values, owner: &str, name: &str, attr_type: AttributeType, p: Positive<'_>) -> String {
        if attr_type == AttributeType::ListOfObjects {
            // Some item's header row, found through the header index.
            return match p {
                Positive::Exists => {
                    let name = self.bind(Bind::Text(name.to_string()));
                    format!(
                        "({owner} IN (SELECT {o} FROM {t} WHERE account_id = {a} AND name = {name} AND {LIST_HEADER}))",
                        o = values.owner,
                        t = values.table,
                        a = self.account,
                    )
                }
                _ => FALSE.into(),
            };
        }
        let (col, repr) = value_column(attr_type);
        let Some(test) = self.value_test(col, Some("value_lower"), repr, &p) else {
            return FALSE.into();
        };
        let name = self.bind(Bind::Text(name.to_string()));
        format!(
            "({owner} IN (SELECT {o} FROM {t} WHERE account_id = {a} AND name = {name} AND field = '' AND {test}))",
            o = values.owner,
            t = values.table,
            a = self.account,
        )
    }

    /// A field of the list item whose header row is `h`.
    fn item_value(&mut self, values: Values, field: &str, attr_type: AttributeType, p: Positive<'_>) -> String {
        let (col, repr) = value_column(attr_type);
        let col = format!("v.{col}");
        let Some(test) = self.value_test(&col, Some("v.value_lower"), repr, &p) else {
            return FALSE.into();
        };
        let field = self.bind(Bind::Text(field.to_string()));
        format!(
            "(EXISTS (SELECT 1 FROM {t} v WHERE v.account_id = {a} AND v.{o} = h.{o} AND v.name = h.name \
             AND v.item = h.item AND v.field = {field} AND {test}))",
            t = values.table,
            o = values.owner,
            a = self.account,
        )
    }

    /// `$elemMatch`: some item of the list matches `sub`.
    fn elem_match(&mut self, field: &Field, sub: &Filter, ctx: Ctx<'_>) -> String {
        let (values, owner, name) = match field {
            Field::PersonCustom { name, .. } => (PERSON_VALUES, ctx.pid.to_string(), name),
            Field::InstallationCustom { name, .. } => (INSTALLATION_VALUES, "i.push_reg_id".to_string(), name),
            _ => return FALSE.into(),
        };
        let inner = compile(sub, false);
        let test = self.expr(
            &inner,
            Ctx {
                pid: ctx.pid,
                item: Some(values),
            },
        );
        let name = self.bind(Bind::Text(name.clone()));
        format!(
            "({owner} IN (SELECT h.{o} FROM {t} h WHERE h.account_id = {a} AND h.name = {name} \
             AND h.field = '' AND h.item >= 0 AND {test}))",
            o = values.owner,
            t = values.table,
            a = self.account,
        )
    }

    fn statement(self, sql: String) -> Statement {
        Statement { sql, binds: self.binds }
    }
}

fn not(sql: String) -> String {
    format!("(NOT {sql})")
}

enum Target {
    Column(Column),
    Keys(Keys),
}

fn person_field(f: PersonField) -> Target {
    let text = |raw, lower| {
        Target::Column(Column {
            raw,
            repr: Repr::Str,
            lower,
            key: None,
            person_row: true,
        })
    };
    match f {
        PersonField::ExternalUserId => text("p.external_user_id", Lower::Reserved(index::EXTERNAL_USER_ID)),
        PersonField::FirstName => text("p.first_name", Lower::Reserved(index::FIRST_NAME)),
        PersonField::MiddleName => text("p.middle_name", Lower::Reserved(index::MIDDLE_NAME)),
        PersonField::LastName => text("p.last_name", Lower::Reserved(index::LAST_NAME)),
        PersonField::Gender => text("p.gender", Lower::None),
        PersonField::Type => text("p.type", Lower::None),
        PersonField::Birthday => Target::Column(Column {
            raw: "p.birthday",
            repr: Repr::DateText,
            lower: Lower::None,
            key: None,
            person_row: true,
        }),
        PersonField::Phones => Target::Keys(Keys {
            table: "person_phones",
            col: "number",
            repr: Repr::Phone,
            prefix: Lower::Column("number"),
        }),
        PersonField::Emails => Target::Keys(Keys {
            table: "person_emails",
            col: "email_key",
            repr: Repr::EmailKey,
            prefix: Lower::Column("email_key"),
        }),
        PersonField::Tags => Target::Keys(Keys {
            table: "person_tags",
            col: "tag",
            repr: Repr::Str,
            prefix: Lower::Reserved(index::TAGS),
        }),
    }
}

fn installation_column(f: InstallationField) -> Column {
    use InstallationField::*;
    let col = |raw, repr, lower, key| Column {
        raw,
        repr,
        lower,
        key,
        person_row: false,
    };
    let text = |raw, lower| col(raw, Repr::Str, Lower::Column(lower), None);
    match f {
        PushRegId => col("i.push_reg_id", Repr::LowerStr, Lower::Column("i.push_reg_id"), None),
        PushServiceType => col("i.push_service_type", Repr::Str, Lower::None, None),
        Os => text("i.os", "s.os_lower"),
        DeviceManufacturer => text("i.device_manufacturer", "s.device_manufacturer_lower"),
        DeviceModel => text("i.device_model", "s.device_model_lower"),
        DeviceName => text("i.device_name", "s.device_name_lower"),
        Language => text("i.language", "s.language_lower"),
        DeviceTimezoneOffset => text("i.device_timezone_offset", "s.device_timezone_offset_lower"),
        ApplicationUserId => text("i.application_user_id", "s.application_user_id_lower"),
        OsVersion => col(
            "i.os_version",
            Repr::Str,
            Lower::Column("s.os_version_lower"),
            Some("s.os_version_key"),
        ),
        AppVersion => col(
            "i.app_version",
            Repr::Str,
            Lower::Column("s.app_version_lower"),
            Some("s.app_version_key"),
        ),
        SdkVersion => col(
            "i.sdk_version",
            Repr::Str,
            Lower::Column("s.sdk_version_lower"),
            Some("s.sdk_version_key"),
        ),
        RegEnabled => col("i.reg_enabled", Repr::Bool, Lower::None, None),
        NotificationsEnabled => col("i.notifications_enabled", Repr::Bool, Lower::None, None),
        DeviceSecure => col("i.device_secure", Repr::Bool, Lower::None, None),
        IsPrimary => col("i.is_primary", Repr::Bool, Lower::None, None),
        // Handled before (a token present or not); never read as a column.
        HasPushServiceToken => col("i.push_service_token", Repr::Bool, Lower::None, None),
        CreatedAt => col("i.created_at", Repr::Millis, Lower::None, None),
        LastSeenAt => col("i.last_seen_at", Repr::Millis, Lower::None, None),
    }
}

// ---------------------------------------------------------------------------------------------
// Statements
// ---------------------------------------------------------------------------------------------

/// `FROM … WHERE …` of the matching pairs of a scope.
fn pairs(r: &mut Renderer, scope: Scope, filter: &Filter) -> String {
    let app = scope
        .application_id
        .map(|a| format!(" AND i.application_id = {}", r.bind(Bind::Text(id(a)))))
        .unwrap_or_default();
    let expr = compile(filter, false);
    let cond = r.expr(
        &expr,
        Ctx {
            pid: "i.person_id",
            item: None,
        },
    );
    let mut from = String::from("FROM installations i");
    if r.person_row {
        from.push_str(" JOIN persons p ON p.account_id = i.account_id AND p.id = i.person_id");
    }
    if r.search_row {
        from.push_str(" LEFT JOIN installation_search s ON s.push_reg_id = i.push_reg_id");
    }
    format!("{from} WHERE i.account_id = {}{app} AND {cond}", r.account)
}

/// Segment preview counts (management-api.md §7.6): one row of matching installations,
/// distinct owners, and the installations a send would use (deliverable, and primary when
/// `primary_only`).
pub fn preview_counts(dialect: Dialect, scope: Scope, filter: &Filter, primary_only: bool) -> Statement {
    let mut r = Renderer::new(dialect, scope.account_id);
    let from_where = pairs(&mut r, scope, filter);
    let mut deliverable = format!(
        "{} AND i.push_service_token IS NOT NULL",
        dialect.truthy("i.reg_enabled")
    );
    if primary_only {
        deliverable.push_str(&format!(" AND {}", dialect.truthy("i.is_primary")));
    }
    let sql =
        format!("SELECT count(*), count(DISTINCT i.person_id), count(CASE WHEN {deliverable} THEN 1 END) {from_where}");
    r.statement(sql)
}

/// The first `limit` owners of matching pairs, by person id.
pub fn preview_sample_people(dialect: Dialect, scope: Scope, filter: &Filter, limit: u32) -> Statement {
    let mut r = Renderer::new(dialect, scope.account_id);
    let from_where = pairs(&mut r, scope, filter);
    let limit = r.bind(Bind::Int(i64::from(limit)));
    let sql = format!("SELECT DISTINCT i.person_id {from_where} ORDER BY i.person_id LIMIT {limit}");
    r.statement(sql)
}

/// The matching installations of some persons: rows of (person id, pushRegId), by person,
/// then oldest first.
pub fn preview_sample_installations(dialect: Dialect, scope: Scope, filter: &Filter, persons: &[Uuid]) -> Statement {
    let mut r = Renderer::new(dialect, scope.account_id);
    let from_where = pairs(&mut r, scope, filter);
    let list = r.bind(Bind::TextList(persons.iter().map(|p| id(*p)).collect()));
    let sql = format!(
        "SELECT i.person_id, i.push_reg_id {from_where} AND {} ORDER BY i.person_id, i.created_at, i.push_reg_id",
        dialect.in_list("i.person_id", &list)
    );
    r.statement(sql)
}

/// The matching installations of a scope in pushRegId order, after `after`, at most `limit`
/// (for walking an audience in chunks).
pub fn audience_page(dialect: Dialect, scope: Scope, filter: &Filter, after: Option<&str>, limit: u32) -> Statement {
    let mut r = Renderer::new(dialect, scope.account_id);
    let from_where = pairs(&mut r, scope, filter);
    let after = r.bind(Bind::Text(after.unwrap_or_default().to_string()));
    let limit = r.bind(Bind::Int(i64::from(limit)));
    let sql =
        format!("SELECT i.push_reg_id {from_where} AND i.push_reg_id > {after} ORDER BY i.push_reg_id LIMIT {limit}");
    r.statement(sql)
}

/// People search (management-api.md §7.4, §4.2): the ids of the persons of the account, after
/// `after`, with at least one matching pair, or without installations in scope and matching with
/// every installation field absent; by id, at most `limit`.
pub fn search_people(dialect: Dialect, scope: Scope, filter: &Filter, after: Option<Uuid>, limit: u32) -> Statement {
    let mut r = Renderer::new(dialect, scope.account_id);
    let after = after
        .map(|a| format!(" AND p.id > {}", r.bind(Bind::Text(id(a)))))
        .unwrap_or_default();
    let ctx = Ctx {
        pid: "p.id",
        item: None,
    };
    let cond = if !filter.uses_installation() {
        r.expr(&compile(filter, false), ctx)
    } else {
        let app = scope
            .application_id
            .map(|a| format!(" AND i.application_id = {}", r.bind(Bind::Text(id(a)))))
            .unwrap_or_default();
        let pair = r.expr(&compile(filter, false), ctx);
        let search = if r.search_row {
            " LEFT JOIN installation_search s ON s.push_reg_id = i.push_reg_id"
        } else {
            ""
        };
        let account = r.account.clone();
        let with_pair = format!(
            "EXISTS (SELECT 1 FROM installations i{search} WHERE i.account_id = {account} \
             AND i.person_id = p.id{app} AND {pair})"
        );
        let without = format!(
            "NOT EXISTS (SELECT 1 FROM installations i WHERE i.account_id = {account} AND i.person_id = p.id{app})"
        );
        match compile(filter, true) {
            Expr::Const(false) => with_pair,
            Expr::Const(true) => format!("({with_pair} OR {without})"),
            absent => {
                let absent = r.expr(&absent, ctx);
                format!("({with_pair} OR ({without} AND {absent}))")
            }
        }
    };
    let limit = r.bind(Bind::Int(i64::from(limit)));
    let sql = format!(
        "SELECT p.id FROM persons p WHERE {} = {}{after} AND {cond} ORDER BY p.id LIMIT {limit}",
        dialect.unindexed("p.account_id"),
        r.account
    );
    r.statement(sql)
}

#[cfg(test)]
mod tests {
    use super::*;
    use roster_model::filter::Filter;
    use roster_model::{AttributeDefinition, AttributeScope, DefinitionOrigin, SchemaField};
    use serde_json::json;

    fn defs() -> Vec<AttributeDefinition> {
        let def = |name: &str, attr_type, schema| AttributeDefinition {
            account_id: Uuid::nil(),
            scope: AttributeScope::Person,
            name: name.into(),
            attr_type,
            object_schema: schema,
            origin: DefinitionOrigin::Api,
            created_at: 0,
        };
        vec![
            def("points", AttributeType::Decimal, None),
            def(
                "orders",
                AttributeType::ListOfObjects,
                Some(vec![SchemaField {
                    name: "sku".into(),
                    field_type: AttributeType::String,
                }]),
            ),
        ]
    }

    fn scope() -> Scope {
        Scope {
            account_id: Uuid::nil(),
            application_id: None,
        }
    }

    /// Every placeholder has a bind and every bind a placeholder.
    fn check_numbering(s: &Statement, dialect: Dialect) {
        for n in 1..=s.binds.len() {
            let ph = dialect.placeholder(n);
            assert!(s.sql.contains(&ph), "placeholder {ph} missing in {}", s.sql);
        }
        assert!(!s.sql.contains(&dialect.placeholder(s.binds.len() + 1)));
    }

    #[test]
    fn statements_bind_every_placeholder() {
        let filters = [
            json!({}),
            json!({"tags": "vip", "installation.os": {"$startsWith": "io"}}),
            json!({"$or": [{"points": {"$gt": 3}}, {"$not": {"orders": {"$elemMatch": {"sku": {"$in": ["a", "b"]}}}}}]}),
            json!({"installation.appVersion": {"$gte": "3.2"}, "firstName": {"$contains": "an"}}),
            json!({"installation.appVersion": {"$gte": "beta"}}),
        ];
        for f in filters {
            let filter = Filter::parse(&f, &defs(), "filter").unwrap();
            for d in [Dialect::Sqlite, Dialect::Postgres] {
                check_numbering(&preview_counts(d, scope(), &filter, true), d);
                check_numbering(&preview_sample_people(d, scope(), &filter, 10), d);
                check_numbering(&preview_sample_installations(d, scope(), &filter, &[Uuid::nil()]), d);
                check_numbering(&search_people(d, scope(), &filter, Some(Uuid::nil()), 10), d);
                check_numbering(&audience_page(d, scope(), &filter, None, 10), d);
            }
        }
    }

    #[test]
    fn absent_installation_folds_to_constants() {
        let f = Filter::parse(&json!({"installation.os": {"$ne": "iOS"}}), &defs(), "filter").unwrap();
        assert!(matches!(compile(&f, true), Expr::Const(true)));
        let f = Filter::parse(&json!({"installation.os": "iOS"}), &defs(), "filter").unwrap();
        assert!(matches!(compile(&f, true), Expr::Const(false)));
        let s = search_people(Dialect::Sqlite, scope(), &f, None, 5);
        assert!(!s.sql.contains("NOT EXISTS"), "{}", s.sql);
    }

    #[test]
    fn a_version_operand_without_a_version_orders_nothing() {
        let f = Filter::parse(&json!({"installation.appVersion": {"$gt": "beta"}}), &defs(), "filter").unwrap();
        let s = preview_counts(Dialect::Postgres, scope(), &f, false);
        assert!(s.sql.contains(FALSE), "{}", s.sql);
        assert_eq!(s.binds.len(), 1);
    }
}
