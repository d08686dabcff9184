//! The two languages of a workflow definition: conditions in CEL (the
//! `cel` crate; `event.data.email.endsWith('@example.com')`) and step
//! inputs as Jinja templates (`minijinja`; `Hello {{ event.data.name }}`),
//! both over the run's context (`{event, input, steps, vars, run}`).
//!
//! Both are checked when a definition is saved (syntax, and every variable
//! they read starts at a name the context has), and evaluated with limits
//! at run time: a template renders with a fuel budget and refuses
//! undefined values, so a typo is an error naming it rather than an empty
//! string in an email.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde_json::Value;

/// The names a run's context has at its top level.
pub const ROOTS: &[&str] = &["event", "input", "steps", "vars", "run"];

/// Brackets inside brackets, at most.
const MAX_NESTING: usize = 24;

/// A condition compiled once per evaluation (programs are not `Send`).
pub fn compile(source: &str) -> Result<cel::Program, String> {
    if source.trim().is_empty() {
        return Err("an empty expression".into());
    }
    if source.len() > 2_000 {
        return Err("at most 2,000 characters".into());
    }
    // The parser recurses per nesting level: bound it (a deep expression
    // would exhaust the stack, which no error can report).
    let mut depth = 0usize;
    for c in source.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > MAX_NESTING {
            return Err(format!("nested more than {MAX_NESTING} levels deep"));
        }
    }
    let compiled = std::panic::catch_unwind(|| cel::Program::compile(source)).map_err(|_| "not a CEL expression the parser can read".to_string())?;
    compiled.map_err(|e| format!("not a CEL expression: {}", first_line(&e.to_string())))
}

/// The top-level variables an expression reads, and the step ids it reads
/// through `steps.<id>`.
pub fn expression_references(source: &str) -> Result<(BTreeSet<String>, BTreeSet<String>), String> {
    let program = compile(source)?;
    let references = program.references();
    let bound = macro_bound(source);
    let variables: BTreeSet<String> = references.variables().into_iter().filter(|v| !bound.contains(*v)).map(str::to_string).collect();
    Ok((variables, step_references(source)))
}

/// The names a comprehension macro binds (`list.exists(r, r == 'x')`):
/// they are the macro's own, not the context's.
fn macro_bound(source: &str) -> BTreeSet<String> {
    let mut bound = BTreeSet::new();
    for name in ["exists_one(", "exists(", "all(", "map(", "filter("] {
        let mut at = 0;
        while let Some(offset) = source[at..].find(name) {
            let start = at + offset + name.len();
            at = start;
            let rest = source[start..].trim_start();
            let ident: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !ident.is_empty() && rest[ident.len()..].trim_start().starts_with(',') {
                bound.insert(ident);
            }
        }
    }
    bound
}

/// Evaluate a condition against `context`; it must give a boolean.
pub fn evaluate(source: &str, context: &Value) -> Result<bool, String> {
    let program = compile(source)?;
    let mut cel_context = cel::Context::default();
    if let Value::Object(map) = context {
        for (name, value) in map {
            cel_context.add_variable(name.as_str(), value).map_err(|e| format!("the context's {name}: {e}"))?;
        }
    }
    match program.execute(&cel_context) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("the condition gave {} where a boolean was expected", type_name(&other))),
        Err(e) => Err(format!("the condition failed: {e}")),
    }
}

fn type_name(value: &cel::Value) -> &'static str {
    match value {
        cel::Value::List(_) => "a list",
        cel::Value::Map(_) => "a map",
        cel::Value::Int(_) | cel::Value::UInt(_) => "an integer",
        cel::Value::Float(_) => "a number",
        cel::Value::String(_) => "a string",
        cel::Value::Bytes(_) => "bytes",
        cel::Value::Null => "null",
        _ => "a value",
    }
}

/// The template environment: undefined values are errors, and a render
/// has a fuel budget (no template loops for ever on a large list).
fn environment() -> &'static minijinja::Environment<'static> {
    static ENV: OnceLock<minijinja::Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_fuel(Some(50_000));
        // Plain text (emails, webhook bodies): no HTML escaping.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env
    })
}

/// Check a template's syntax; the top-level variables and step ids it reads.
pub fn template_references(source: &str) -> Result<(BTreeSet<String>, BTreeSet<String>), String> {
    if source.len() > 20_000 {
        return Err("at most 20,000 characters".into());
    }
    let template = environment().template_from_str(source).map_err(|e| format!("not a valid template: {}", first_line(&e.to_string())))?;
    let variables = template.undeclared_variables(false).into_iter().collect();
    Ok((variables, step_references(source)))
}

/// Render a template against `context`.
pub fn render(source: &str, context: &Value) -> Result<String, String> {
    environment()
        .render_str(source, minijinja::Value::from(minijinja::value::Serde(context)))
        .map_err(|e| format!("the template failed: {}", first_line(&e.to_string())))
}

/// Render every string inside a JSON value (a webhook body, a run's input).
pub fn render_value(value: &Value, context: &Value) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) => Value::String(render(s, context)?),
        Value::Array(items) => Value::Array(items.iter().map(|v| render_value(v, context)).collect::<Result<_, _>>()?),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| Ok((k.clone(), render_value(v, context)?))).collect::<Result<_, String>>()?),
        other => other.clone(),
    })
}

/// Every template string inside a JSON value.
pub fn strings_of(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings_of(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings_of(v, out)),
        _ => {}
    }
}

/// The ids named as `steps.<id>` or `steps['<id>']` in a source text.
fn step_references(source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let bytes = source.as_bytes();
    let mut at = 0;
    while let Some(offset) = source[at..].find("steps") {
        let start = at + offset;
        at = start + 5;
        let before_ok = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_' || bytes[start - 1] == b'.');
        if !before_ok {
            continue;
        }
        let rest = &source[at..];
        let id: String = if let Some(rest) = rest.strip_prefix('.') {
            rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
        } else if let Some(rest) = rest.strip_prefix("['").or_else(|| rest.strip_prefix("[\"")) {
            rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
        } else {
            continue;
        };
        if !id.is_empty() {
            found.insert(id);
        }
    }
    found
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions_read_the_context() {
        let context = json!({"event": {"data": {"email": "a@example.com", "amount": 120}}});
        assert_eq!(evaluate("event.data.email.endsWith('@example.com')", &context), Ok(true));
        assert_eq!(evaluate("event.data.amount > 100", &context), Ok(true));
        assert!(evaluate("event.data.email", &context).unwrap_err().contains("boolean"));
        assert!(evaluate("event.data.missing == 1", &context).is_err());
        assert!(compile("event.data.email.endsWith(").is_err());
        assert!(compile(&format!("{}1{}", "(".repeat(500), ")".repeat(500))).unwrap_err().contains("nested"));
    }

    #[test]
    fn references_are_found() {
        let (vars, steps) = expression_references("steps.check.output.ok && event.data.x == 1").unwrap();
        assert_eq!(vars, BTreeSet::from(["steps".to_string(), "event".to_string()]));
        assert_eq!(steps, BTreeSet::from(["check".to_string()]));
        let (vars, steps) = template_references("Hello {{ event.data.name }} {{ steps['mail'].output.id }}").unwrap();
        assert!(vars.contains("event") && vars.contains("steps"));
        assert_eq!(steps, BTreeSet::from(["mail".to_string()]));
    }

    #[test]
    fn templates_refuse_undefined_values() {
        let context = json!({"event": {"data": {"name": "Ada"}}});
        assert_eq!(render("Hello {{ event.data.name }}", &context).unwrap(), "Hello Ada");
        assert!(render("Hello {{ event.data.nme }}", &context).is_err());
        assert_eq!(render_value(&json!({"text": "{{ event.data.name }}!", "n": 1}), &context).unwrap(), json!({"text": "Ada!", "n": 1}));
    }
}
