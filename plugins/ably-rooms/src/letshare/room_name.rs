//! Room names as the LetShare frontend validates them: 2 to 12 characters (not bytes), each a
//! CJK ideograph in U+4E00..=U+9FA5, an ASCII letter or digit, a space, `_` or `-`.

/// Why a room name is refused (the message goes to the client).
pub fn check(name: &str) -> Result<(), &'static str> {
    let n = name.chars().count();
    if n < 2 {
        return Err("房间名太短啦，至少两个字符");
    }
    if n > 12 {
        return Err("房间名太长啦，最多十二个字符");
    }
    let ok = |c: char| {
        ('\u{4e00}'..='\u{9fa5}').contains(&c)
            || c.is_ascii_alphanumeric()
            || c == ' '
            || c == '_'
            || c == '-'
    };
    if !name.chars().all(ok) {
        return Err("房间名只能包含中文、字母、数字、空格、下划线和短横线");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn frontend_rule() {
        for good in [
            "ab",
            "房间",
            "my room_1-2",
            "abcdefghijkl",
            "中文房间名字十二个字符呀",
        ] {
            assert!(check(good).is_ok(), "{good}");
        }
        for bad in [
            "a",
            "",
            "abcdefghijklm",
            "a/b",
            "émoji",
            "ab\u{9fa6}",
            "room!",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
        // Counted in characters: 12 CJK characters are 36 bytes and still fine.
        assert!(check("一二三四五六七八九十一二").is_ok());
    }
}
