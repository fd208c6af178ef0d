//! Street addresses (issue 11): Japanese in every written form, unambiguous English ones.
//! The addresses are invented (Faker-style town and building names).

use tollgate_dlp::*;

fn ents(text: &str) -> Vec<(Entity, String)> {
    detect(text)
        .into_iter()
        .map(|d| (d.entity, text[d.start..d.end].to_owned()))
        .collect()
}

fn fullwidth(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '!'..='~' => char::from_u32(c as u32 + 0xFEE0).unwrap_or(c),
            ' ' => '\u{3000}',
            _ => c,
        })
        .collect()
}

#[test]
fn japanese_addresses_in_every_form() {
    for addr in [
        "東京都千代田区丸の内1丁目9番1号",
        "東京都千代田区丸の内1-9-1 グラン丸の内ビル12F",
        "愛媛県袖ケ浦市東和町31丁目9番18号 アーバン上高野887",
        "神奈川県長生郡長柄町戸塚町41丁目10番14号 日本堤シティ896",
        "大阪市北区梅田3-1-3",
        "北海道札幌市中央区北一条西二丁目",
        "長野県小笠原村轟18丁目16番20号",
        "京都府京都市左京区吉田本町36番地1",
        "渋谷区神南1-2-3 コーポ神南101号室",
        // neither a prefecture nor a designated city first: a full block number is needed
        "町田市原町田4丁目1番17号",
        "八王子市元本郷町3-24-1",
        "いわき市平字田町1丁目2番3号",
        "西多摩郡瑞穂町箱根ケ崎2335番地2号",
        // a space before the block number
        "東京都町田市原町田 4-1-17",
        "町田市森野 2丁目2-22 ハイツ森野203号室",
    ] {
        for text in [
            format!("住所は{addr}です。"),
            format!("送付先：{addr}"),
            format!("Ship it to {addr} please"),
        ] {
            assert_eq!(
                ents(&text),
                vec![(Entity::StreetAddress, addr.to_owned())],
                "{text}"
            );
        }
        // full-width digits, hyphens and letters
        let fw = fullwidth(addr);
        let text = format!("住所は{fw}です。");
        assert_eq!(
            ents(&text),
            vec![(Entity::StreetAddress, fw.clone())],
            "{text}"
        );
    }
    assert_eq!(Entity::StreetAddress.category(), Category::Contact);
}

#[test]
fn japanese_places_without_a_block_number_are_not_addresses() {
    for text in [
        "東京都千代田区に住んでいます。人口は12345人です。",
        "大阪府では2024-05-17に開催します。",
        "神奈川県の3月の売上は前年比12%増でした。",
        "北海道札幌市で5月1日-3日に雪まつり",
        "京都府京都市の人口は約146万人です",
        // a city name with a block-number-like run that is not a full block number
        "町田市で2-3の試合がありました",
        "都市伝説は3-4回聞いた",
        "横浜市民の12-5で勝利",
        "新市場のバージョン1-2-3を使う",
    ] {
        assert!(ents(text).is_empty(), "{text}: {:?}", ents(text));
    }
}

#[test]
fn english_addresses_only_when_unambiguous() {
    for (text, addr) in [
        (
            "Send it to 2328 Figueroa Skyway Apt. 290 by Friday",
            "2328 Figueroa Skyway Apt. 290",
        ),
        (
            "HQ: 9791 Regina Mountains\nAndreaborough, VT 62139, open daily",
            "9791 Regina Mountains\nAndreaborough, VT 62139",
        ),
        ("My address is 42 Oak Street, come by", "42 Oak Street"),
        (
            "office at 1600 N Pennsylvania Ave, Suite 200 since May",
            "1600 N Pennsylvania Ave, Suite 200",
        ),
    ] {
        assert_eq!(
            ents(text),
            vec![(Entity::StreetAddress, addr.to_owned())],
            "{text}"
        );
    }
    for text in [
        "use the 3 Way handshake",
        "we bought 12 Main Street shares",
        "Chapter 7 Silver Lake Road is a song",
        "build 2024 Green Park release notes",
    ] {
        assert!(ents(text).is_empty(), "{text}: {:?}", ents(text));
    }
}
