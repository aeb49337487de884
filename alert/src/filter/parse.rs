//! The predicate language's parser: recursive descent over a small tokenizer.
//!
//! ```text
//! expr       := and ( "||" and )*
//! and        := unary ( "&&" unary )*
//! unary      := "!" unary | "(" expr ")" | comparison
//! comparison := path ( op literal | "is" "null" | "is" "not" "null" )
//! op         := "==" | "!=" | "<" | "<=" | ">" | ">="
//! literal    := integer | float | "string" | true | false
//! ```

use super::expr::{Expr, Literal, Op};
use crate::path::FieldPath;
use crate::{Error, Result};

const MAX_DEPTH: usize = 64;
/// Most comparisons one filter makes. A filter runs on every alert of a stream and its
/// fields are looked up in every payload: a request of a megabyte could otherwise ask for
/// a hundred thousand per alert (a database query takes at most 4096 values as well).
pub(crate) const MAX_COMPARISONS: usize = 4096;

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    depth: usize,
    comparisons: usize,
}

/// Parses a predicate such as `candidate.magpsf < 18.5 && candidate.ndethist >= 3`.
pub(crate) fn parse(src: &str) -> Result<Expr> {
    let mut p = Parser {
        src,
        pos: 0,
        depth: 0,
        comparisons: 0,
    };
    let expr = p.or()?;
    p.skip_ws();
    if p.pos < src.len() {
        return Err(p.error("`&&`, `||` or the end of the filter"));
    }
    Ok(expr)
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn error(&self, expected: &str) -> Error {
        let found = match self.rest().chars().next() {
            None => "the end of the filter".to_owned(),
            Some(_) => format!("{:?}", self.rest().chars().take(12).collect::<String>()),
        };
        Error::FilterSyntax {
            offset: self.pos,
            column: self.src[..self.pos].chars().count() + 1,
            expected: expected.to_owned(),
            found,
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    /// Eats a keyword only when it is a whole word.
    fn eat_word(&mut self, word: &str) -> bool {
        self.skip_ws();
        match self.rest().strip_prefix(word) {
            Some(after) if after.chars().next().is_none_or(|c| !is_ident(c)) => {
                self.pos += word.len();
                true
            }
            _ => false,
        }
    }

    fn nest(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("at most 64 levels of nesting"));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr> {
        let mut items = vec![self.and()?];
        while self.eat("||") {
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self) -> Result<Expr> {
        let mut items = vec![self.unary()?];
        while self.eat("&&") {
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn unary(&mut self) -> Result<Expr> {
        self.nest()?;
        self.skip_ws();
        let expr = if self.rest().starts_with('!') && !self.rest().starts_with("!=") {
            self.pos += 1;
            Expr::Not(Box::new(self.unary()?))
        } else if self.eat("(") {
            let inner = self.or()?;
            if !self.eat(")") {
                return Err(self.error("`)`"));
            }
            inner
        } else {
            self.comparison()?
        };
        self.depth -= 1;
        Ok(expr)
    }

    fn comparison(&mut self) -> Result<Expr> {
        self.comparisons += 1;
        if self.comparisons > MAX_COMPARISONS {
            return Err(self.error("at most 4096 comparisons in one filter"));
        }
        self.skip_ws();
        let start = self.pos;
        let len = self
            .rest()
            .find(|c: char| !(is_ident(c) || c == '.'))
            .unwrap_or(self.rest().len());
        if len == 0 {
            return Err(self.error("a field path, `!` or `(`"));
        }
        let text = &self.src[start..start + len];
        let path =
            FieldPath::parse(text).map_err(|_| self.error("a field path like candidate.magpsf"))?;
        self.pos += len;
        if self.eat_word("is") {
            let negated = self.eat_word("not");
            if !self.eat_word("null") {
                return Err(self.error(if negated {
                    "`null`"
                } else {
                    "`null` or `not null`"
                }));
            }
            return Ok(Expr::IsNull { path, negated });
        }
        let op = [
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("<", Op::Lt),
            (">", Op::Gt),
        ]
        .into_iter()
        .find(|(t, _)| self.eat(t))
        .map(|(_, op)| op)
        .ok_or_else(|| self.error("a comparison (== != < <= > >=) or `is [not] null`"))?;
        let literal = self.literal()?;
        Ok(Expr::Compare { path, op, literal })
    }

    fn literal(&mut self) -> Result<Literal> {
        self.skip_ws();
        if self.eat_word("true") {
            return Ok(Literal::Bool(true));
        }
        if self.eat_word("false") {
            return Ok(Literal::Bool(false));
        }
        if self.rest().starts_with('"') {
            return self.string();
        }
        let len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+')))
            .unwrap_or(self.rest().len());
        let text = &self.rest()[..len];
        let literal = if let Ok(i) = text.parse::<i64>() {
            Literal::Int(i)
        } else if let Some(x) = text
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && text.bytes().any(|b| b.is_ascii_digit()))
        {
            Literal::Float(x)
        } else {
            return Err(self.error("a number, a \"string\", true or false"));
        };
        self.pos += len;
        Ok(literal)
    }

    fn string(&mut self) -> Result<Literal> {
        let start = self.pos;
        let mut out = String::new();
        let mut chars = self.rest().char_indices().skip(1);
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos = start + i + 1;
                    return Ok(Literal::Str(out));
                }
                '\\' => match chars.next() {
                    Some((_, c @ ('"' | '\\'))) => out.push(c),
                    _ => {
                        self.pos = start + i;
                        return Err(self.error("an escape \\\" or \\\\"));
                    }
                },
                c => out.push(c),
            }
        }
        Err(self.error("a closing `\"`"))
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}
