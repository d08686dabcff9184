//! Reads template.yaml (SAM, with CloudFormation's short-form intrinsics)
//! and resolves the intrinsics the local stack needs: `!Ref`, `!GetAtt`,
//! `!Sub`.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use yaml_serde::Value;

pub struct Template {
    root: Value,
}

/// What a resource resolves to: `!Ref` and its `!GetAtt` attributes.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub reference: String,
    pub attributes: HashMap<String, String>,
}

pub struct Context<'a> {
    pub stack: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub parameters: &'a HashMap<String, String>,
    pub resources: &'a HashMap<String, Resolved>,
}

impl Template {
    pub fn load(path: &Path) -> anyhow::Result<Template> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let root: Value = yaml_serde::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        Ok(Template { root })
    }

    /// `(logical id, type, properties)` of every resource, in file order.
    pub fn resources(&self) -> Vec<(String, String, Value)> {
        let Some(resources) = self.root.get("Resources").and_then(Value::as_mapping) else { return Vec::new() };
        resources
            .iter()
            .filter_map(|(k, v)| {
                let id = k.as_str()?.to_string();
                let kind = v.get("Type")?.as_str()?.to_string();
                let props = v.get("Properties").cloned().unwrap_or(Value::Null);
                Some((id, kind, props))
            })
            .collect()
    }

    /// Parameter defaults, overridden by `overrides`.
    pub fn parameters(&self, overrides: &HashMap<String, String>) -> HashMap<String, String> {
        let mut out = HashMap::new();
        if let Some(params) = self.root.get("Parameters").and_then(Value::as_mapping) {
            for (k, v) in params {
                if let (Some(name), Some(default)) = (k.as_str(), v.get("Default")) {
                    out.insert(name.to_string(), scalar(default).unwrap_or_default());
                }
            }
        }
        out.extend(overrides.clone());
        out
    }

    /// The environment every function gets (`Globals.Function.Environment`).
    pub fn function_environment(&self) -> Vec<(String, Value)> {
        self.root
            .get("Globals")
            .and_then(|g| g.get("Function"))
            .and_then(|f| f.get("Environment"))
            .and_then(|e| e.get("Variables"))
            .and_then(Value::as_mapping)
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.clone()))).collect())
            .unwrap_or_default()
    }

    /// The variables single functions add to it (`Properties.Environment`
    /// of each `AWS::Serverless::Function`), in file order. Locally every
    /// function runs in one process, so they join the one environment.
    pub fn functions_own_environment(&self) -> Vec<(String, Value)> {
        self.resources()
            .into_iter()
            .filter(|(_, kind, _)| kind == "AWS::Serverless::Function")
            .filter_map(|(_, _, props)| props.get("Environment")?.get("Variables")?.as_mapping().cloned())
            .flat_map(|vars| vars.into_iter().filter_map(|(k, v)| Some((k.as_str()?.to_string(), v))).collect::<Vec<_>>())
            .collect()
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Context<'_> {
    fn pseudo(&self, name: &str) -> Option<String> {
        match name {
            "AWS::Region" => Some(self.region.to_string()),
            "AWS::AccountId" => Some(self.account.to_string()),
            "AWS::StackName" => Some(self.stack.to_string()),
            "AWS::Partition" => Some("aws".to_string()),
            "AWS::URLSuffix" => Some("amazonaws.com".to_string()),
            _ => None,
        }
    }

    fn reference(&self, name: &str) -> anyhow::Result<String> {
        if let Some(v) = self.pseudo(name) {
            return Ok(v);
        }
        if let Some(v) = self.parameters.get(name) {
            return Ok(v.clone());
        }
        self.resources.get(name).map(|r| r.reference.clone()).ok_or_else(|| anyhow!("!Ref {name}: not created locally"))
    }

    fn attribute(&self, target: &str) -> anyhow::Result<String> {
        let (name, attr) = target.split_once('.').ok_or_else(|| anyhow!("!GetAtt {target}: expected Resource.Attribute"))?;
        self.resources.get(name).and_then(|r| r.attributes.get(attr)).cloned().ok_or_else(|| anyhow!("!GetAtt {target}: not available locally"))
    }

    /// Resolve a scalar or an intrinsic to a string.
    pub fn resolve(&self, value: &Value) -> anyhow::Result<String> {
        if let Some(s) = scalar(value) {
            return Ok(s);
        }
        if let Value::Tagged(tagged) = value {
            let tag = tagged.tag.to_string();
            let tag = tag.trim_start_matches('!');
            return match tag {
                "Ref" => self.reference(tagged.value.as_str().ok_or_else(|| anyhow!("!Ref takes a name"))?),
                "GetAtt" => match &tagged.value {
                    Value::String(s) => self.attribute(s),
                    Value::Sequence(parts) if parts.len() == 2 => {
                        self.attribute(&format!("{}.{}", parts[0].as_str().unwrap_or(""), parts[1].as_str().unwrap_or("")))
                    }
                    _ => bail!("!GetAtt takes Resource.Attribute"),
                },
                "Sub" => self.substitute(tagged.value.as_str().ok_or_else(|| anyhow!("only the string form of !Sub is supported locally"))?),
                other => bail!("intrinsic !{other} is not supported by the local stack"),
            };
        }
        if let Some(map) = value.as_mapping()
            && let Some(name) = map.get("Ref").and_then(Value::as_str)
        {
            return self.reference(name);
        }
        bail!("cannot resolve {value:?} to a string")
    }

    fn substitute(&self, text: &str) -> anyhow::Result<String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').ok_or_else(|| anyhow!("unterminated ${{ in !Sub {text:?}"))? + start;
            let name = &rest[start + 2..end];
            out.push_str(&if name.contains('.') { self.attribute(name)? } else { self.reference(name)? });
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_intrinsics() {
        let t: Value =
            yaml_serde::from_str("a: !Ref Table\nb: !GetAtt Queue.Arn\nc: !Sub arn:${AWS::Partition}:x:${AWS::Region}:${Table}/${Queue.Arn}\nd: 5").unwrap();
        let params = HashMap::new();
        let mut resources = HashMap::new();
        resources.insert("Table".to_string(), Resolved { reference: "tbl".into(), attributes: HashMap::new() });
        resources.insert("Queue".to_string(), Resolved { reference: "url".into(), attributes: HashMap::from([("Arn".to_string(), "qarn".to_string())]) });
        let ctx = Context { stack: "s", region: "us-east-1", account: "1", parameters: &params, resources: &resources };
        assert_eq!(ctx.resolve(t.get("a").unwrap()).unwrap(), "tbl");
        assert_eq!(ctx.resolve(t.get("b").unwrap()).unwrap(), "qarn");
        assert_eq!(ctx.resolve(t.get("c").unwrap()).unwrap(), "arn:aws:x:us-east-1:tbl/qarn");
        assert_eq!(ctx.resolve(t.get("d").unwrap()).unwrap(), "5");
    }

    #[test]
    fn reads_the_real_template() {
        let t = Template::load(&crate::repo_root().join("template.yaml")).unwrap();
        let kinds: Vec<String> = t.resources().into_iter().map(|(_, k, _)| k).collect();
        assert!(kinds.iter().any(|k| k == "AWS::DynamoDB::Table"));
        assert!(t.function_environment().iter().any(|(k, _)| k == "KEEL_TABLE"));
    }
}
