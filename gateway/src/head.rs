//! The upgrade request's path, query and headers, kept in one allocation for the connection's
//! life (plugins may ask for them at any time through `connection-info`).

/// Path, query and headers of an upgrade request in one string: `path`, `query`, then one
/// `name:value\n` line per header (HTTP forbids CR and LF in values and `:` in names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    text: Box<str>,
    path_end: u32,
    query_end: u32,
}

impl RequestHead {
    /// Packs a request head; headers keep their order. Parts longer than 4 GiB are cut off.
    pub fn new(path: &str, query: &str, headers: &[(String, String)]) -> Self {
        let size = path.len()
            + query.len()
            + headers
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>();
        let mut text = String::with_capacity(size);
        text.push_str(path);
        let path_end = text.len() as u32;
        text.push_str(query);
        let query_end = text.len() as u32;
        for (k, v) in headers {
            // A name with ':' or any part with '\n' cannot come from hyper; drop the header
            // rather than mis-split it.
            if k.contains([':', '\n']) || v.contains('\n') {
                continue;
            }
            text.push_str(k);
            text.push(':');
            text.push_str(v);
            text.push('\n');
        }
        RequestHead {
            text: text.into_boxed_str(),
            path_end,
            query_end,
        }
    }

    /// The request path.
    pub fn path(&self) -> &str {
        &self.text[..self.path_end as usize]
    }

    /// The raw query string (without `?`).
    pub fn query(&self) -> &str {
        &self.text[self.path_end as usize..self.query_end as usize]
    }

    /// The headers as (lower-case name, value), in request order.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.text[self.query_end as usize..]
            .split_terminator('\n')
            .filter_map(|line| line.split_once(':'))
    }
}

#[cfg(test)]
mod tests {
    use super::RequestHead;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn round_trips_path_query_and_headers() {
        let headers = h(&[
            ("host", "127.0.0.1:8080"),
            ("cookie", "a=b; c=d:e"),
            ("x-empty", ""),
            ("host", "second"),
        ]);
        let head = RequestHead::new("/ws/room", "token=x&y=1", &headers);
        assert_eq!(head.path(), "/ws/room");
        assert_eq!(head.query(), "token=x&y=1");
        let back: Vec<(&str, &str)> = head.headers().collect();
        assert_eq!(
            back,
            vec![
                ("host", "127.0.0.1:8080"),
                ("cookie", "a=b; c=d:e"),
                ("x-empty", ""),
                ("host", "second")
            ]
        );
    }

    #[test]
    fn empty_parts() {
        let head = RequestHead::new("", "", &[]);
        assert_eq!((head.path(), head.query()), ("", ""));
        assert_eq!(head.headers().count(), 0);
    }

    #[test]
    fn drops_headers_that_cannot_be_split_back() {
        let head = RequestHead::new(
            "/p",
            "",
            &h(&[("bad:name", "v"), ("ok", "v"), ("nl", "a\nb")]),
        );
        assert_eq!(head.headers().collect::<Vec<_>>(), vec![("ok", "v")]);
    }
}
