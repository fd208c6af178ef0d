"""Labelled DLP evaluation corpus, generated at test time with fixed seeds.

Every value is generated to be *valid* for its format (Luhn, mod-97, check
digits, CRC checksums, phonenumbers' validity data) and embedded in English and
Japanese sentence templates, in several written forms: plain, glued to kanji
without spaces, full-width, dash variants, zero-width characters, no-break
spaces, inside a JSON document. Hard negatives are look-alikes that must never
be reported: Luhn-failing card numbers, check-digit-failing national numbers,
UUIDs, git hashes, timestamps, ISBNs, order numbers, placeholder keys,
documentation IP ranges, version strings and ordinary prose.

No secret-shaped literal appears in this file: every key is assembled at run
time from a prefix and random characters.
"""

from __future__ import annotations

import base64
import json
import random
import string
import uuid
import zlib
from dataclasses import dataclass, field
from urllib.parse import quote

import phonenumbers
from faker import Faker
from stdnum import iban as std_iban
from stdnum.jp import cn as std_cn
from stdnum.jp import in_ as std_in

# Key families with a documented prefix or signature (issue 11); env-variable name per family
KEY_FAMILIES = {
    "HUGGINGFACE_TOKEN": "HF_TOKEN", "GROQ_KEY": "GROQ_API_KEY", "XAI_KEY": "XAI_API_KEY",
    "OPENROUTER_KEY": "OPENROUTER_API_KEY", "DEEPSEEK_KEY": "DEEPSEEK_API_KEY",
    "PERPLEXITY_KEY": "PERPLEXITY_API_KEY", "REPLICATE_TOKEN": "REPLICATE_API_TOKEN",
    "PINECONE_KEY": "PINECONE_API_KEY", "LANGSMITH_KEY": "LANGSMITH_API_KEY",
    "AWS_BEDROCK_KEY": "AWS_BEARER_TOKEN_BEDROCK", "GITLAB_TOKEN": "GITLAB_TOKEN", "NPM_TOKEN": "NPM_TOKEN",
    "PYPI_TOKEN": "TWINE_PASSWORD", "TWILIO_KEY": "TWILIO_API_KEY", "SENDGRID_KEY": "SENDGRID_API_KEY",
    "DATABRICKS_TOKEN": "DATABRICKS_TOKEN", "SUPABASE_KEY": "SUPABASE_ACCESS_TOKEN", "SENTRY_TOKEN": "SENTRY_AUTH_TOKEN",
    "TELEGRAM_BOT_TOKEN": "TELEGRAM_BOT_TOKEN", "AZURE_CLIENT_SECRET": "AZURE_CLIENT_SECRET",
    "AZURE_OPENAI_KEY": "AZURE_OPENAI_API_KEY", "WEBHOOK_URL": "SLACK_WEBHOOK_URL",
}

SECRETS = [
    "AWS_ACCESS_KEY", "AWS_SECRET_KEY", "PRIVATE_KEY", "JWT", "OPENAI_KEY", "ANTHROPIC_KEY",
    "GITHUB_TOKEN", "SLACK_TOKEN", "STRIPE_KEY", "GOOGLE_API_KEY", "TOLLGATE_KEY", "PASSWORD",
    "URL_CREDENTIAL", *KEY_FAMILIES, "COHERE_KEY", "MISTRAL_KEY", "VERCEL_TOKEN", "GENERIC_SECRET",
]
PII = [
    "CREDIT_CARD", "IBAN", "US_SSN", "EMAIL", "PHONE", "JP_MY_NUMBER", "JP_CORPORATE_NUMBER",
    "JP_POSTAL_CODE", "IP_ADDRESS", "STREET_ADDRESS",
]
ENTITIES = PII + SECRETS

B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
ZW = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"]
DASHES = ["ー", "‐", "−", "–", "—", "－"]


@dataclass
class Doc:
    text: str
    labels: list = field(default_factory=list)  # (entity, start, end) in code points
    lang: str = "en"
    variant: str = "plain"
    kind: str = "pos"  # pos | neg
    group: str = ""  # entity (pos) or negative family (neg)


# --------------------------------------------------------------------- values


def luhn_ok(d: str) -> bool:
    s = 0
    for i, ch in enumerate(reversed(d)):
        v = int(ch)
        if i % 2 == 1:
            v *= 2
            if v > 9:
                v -= 9
        s += v
    return s % 10 == 0


def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for c in string.digits:
        if luhn_ok(body + c):
            return body + c
    raise AssertionError("unreachable")


CARD_BRANDS = [
    (["4"], [16, 16, 16, 13, 19]),  # Visa
    (["51", "52", "53", "54", "55"], [16]),  # Mastercard
    ([str(x) for x in range(2221, 2721)], [16]),  # Mastercard 2-series
    (["34", "37"], [15]),  # Amex
    (["6011", "65", "644", "649"], [16]),  # Discover
    ([str(x) for x in range(3528, 3590)], [16]),  # JCB
    (["36", "38", "300", "305"], [14]),  # Diners
    (["62"], [16, 19]),  # UnionPay
]


def card(rng):
    prefixes, lengths = rng.choice(CARD_BRANDS)
    return luhn_complete(rng.choice(prefixes), rng.choice(lengths), rng)


def format_card(d: str, rng) -> str:
    style = rng.choice(["plain", "space", "hyphen"])
    if style == "plain":
        return d
    sep = " " if style == "space" else "-"
    if len(d) == 15:
        return sep.join([d[:4], d[4:10], d[10:]])
    if len(d) == 14:
        return sep.join([d[:4], d[4:10], d[10:]])
    if len(d) == 13:
        return d
    return sep.join(d[i:i + 4] for i in range(0, len(d), 4))


IBAN_SPECS = {  # country: list of (kind, n) for the BBAN; 'n' digits, 'a' upper letters, 'c' alnum
    "DE": [("n", 18)], "GB": [("a", 4), ("n", 14)], "FR": [("n", 10), ("c", 11), ("n", 2)],
    "ES": [("n", 20)], "IT": [("a", 1), ("n", 10), ("c", 12)], "NL": [("a", 4), ("n", 10)],
    "CH": [("n", 5), ("c", 12)], "BE": [("n", 12)], "AT": [("n", 16)], "PL": [("n", 24)],
    "SE": [("n", 20)], "NO": [("n", 11)], "DK": [("n", 14)], "IE": [("a", 4), ("n", 14)],
    "PT": [("n", 21)], "FI": [("n", 14)],
}


def iban(rng):
    cc = rng.choice(sorted(IBAN_SPECS))
    bban = ""
    for kind, n in IBAN_SPECS[cc]:
        alpha = {"n": string.digits, "a": string.ascii_uppercase, "c": string.digits + string.ascii_uppercase}[kind]
        bban += "".join(rng.choice(alpha) for _ in range(n))
    check = std_iban.calc_check_digits(cc + "00" + bban)
    value = cc + check + bban
    std_iban.validate(value, check_country=False)  # mod-97 and length
    r = rng.random()
    if r < 0.45:
        value = " ".join(value[i:i + 4] for i in range(0, len(value), 4))
    elif r < 0.6:
        value = "-".join(value[i:i + 4] for i in range(0, len(value), 4))
    elif r < 0.7:  # national grouping: country + check, then bank code, then account
        value = value[:4] + " " + value[4:12] + " " + value[12:]
    return value


def ssn(fake_en, rng):
    while True:
        s = fake_en.ssn()
        a, g, sr = s.split("-")
        if a in ("000", "666") or a >= "900" or g == "00" or sr == "0000" or s in ("078-05-1120", "219-09-9999", "123-45-6789"):
            continue
        r = rng.random()
        return s if r < 0.7 else s.replace("-", " ") if r < 0.85 else s.replace("-", ".")


def my_number(rng):
    body = "".join(rng.choice(string.digits) for _ in range(11))
    d = body + std_in.calc_check_digit(body)
    assert std_in.is_valid(d)
    style = rng.choice(["plain", "space", "hyphen"])
    if style == "plain":
        return d
    sep = " " if style == "space" else "-"
    return sep.join([d[:4], d[4:8], d[8:]])


def corporate_number(rng):
    body = "".join(rng.choice(string.digits) for _ in range(12))
    d = std_cn.calc_check_digit(body) + body
    assert std_cn.is_valid(d)
    return d


def jp_phone(rng):
    kind = rng.choice(["mobile", "mobile", "landline", "ip", "freedial", "freedial800"])
    while True:
        if kind == "mobile":
            nat = rng.choice(["90", "80", "70"]) + "".join(rng.choice(string.digits) for _ in range(8))
        elif kind == "landline":
            area = rng.choice(["3", "6", "45", "52", "75", "92", "11", "466", "258"])
            nat = area + rng.choice("23456789") + "".join(rng.choice(string.digits) for _ in range(8 - len(area)))
        elif kind == "ip":
            nat = "50" + rng.choice("123456789") + "".join(rng.choice(string.digits) for _ in range(7))
        elif kind == "freedial":
            nat = "120" + "".join(rng.choice(string.digits) for _ in range(6))
        else:
            nat = "800" + rng.choice("123456789") + "".join(rng.choice(string.digits) for _ in range(6))
        num = phonenumbers.parse("+81" + nat)
        if phonenumbers.is_valid_number(num):
            break
    fmt = rng.choice(["national", "national", "intl", "e164", "compact"])
    if fmt == "national":
        return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.NATIONAL)
    if fmt == "intl":
        return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    if fmt == "e164":
        return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    nat_s = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.NATIONAL).replace("-", "")
    if len(nat_s) == 11:  # compact 11-digit mobile / IP / 0800 numbers are unambiguous
        return nat_s
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.NATIONAL)


def us_phone(rng):
    while True:
        nat = rng.choice("23456789") + rng.choice("0123456778") + rng.choice(string.digits)
        nat += rng.choice("23456789") + "".join(rng.choice(string.digits) for _ in range(6))
        num = phonenumbers.parse("+1" + nat)
        if phonenumbers.is_valid_number(num) and nat[1:3] != "11" and nat[4:6] != "11":
            break
    fmt = rng.choice(["national", "intl", "e164", "dash", "dot"])
    if fmt == "national":
        return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.NATIONAL)
    if fmt == "intl":
        return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    if fmt == "e164":
        return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    sep = "-" if fmt == "dash" else "."
    return sep.join([nat[:3], nat[3:6], nat[6:]])


DOC_V4 = ("192.0.2.", "198.51.100.", "203.0.113.")


def ip(fake, rng):
    while True:
        kind = rng.random()
        if kind < 0.4:
            v = fake.ipv4_public()
        elif kind < 0.7:
            v = fake.ipv4_private()
        else:
            v = fake.ipv6()
            if rng.random() < 0.5:  # compressed form as people write it
                import ipaddress

                v = str(ipaddress.IPv6Address(v))
        if v.startswith(DOC_V4) or v.lower().startswith("2001:db8:") or v.lower().startswith("2001:0db8:"):
            continue
        if ":" not in v and all(len(o) == 1 for o in v.split(".")):
            continue
        return v


def rand(rng, alphabet, n):
    return "".join(rng.choice(alphabet) for _ in range(n))


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def base62_6(v: int) -> str:
    out = ""
    while v:
        out = B62[v % 62] + out
        v //= 62
    return out.rjust(6, "0")


def secret(entity, rng, fake):
    if entity == "AWS_ACCESS_KEY":
        prefix = rng.choice(["AK" + "IA", "AS" + "IA", "AK" + "IA", "AB" + "IA", "AC" + "CA", "A3" + "T" + rng.choice(string.ascii_uppercase)])
        return prefix + rand(rng, string.ascii_uppercase + "234567", 16)
    if entity == "AWS_SECRET_KEY":
        while True:
            v = rand(rng, string.ascii_letters + string.digits + "/+", 40)
            if any(c.isdigit() for c in v) and any(c.islower() for c in v) and any(c.isupper() for c in v):
                return v
    if entity == "PRIVATE_KEY":
        label = rng.choice(["RSA PRIVATE", "PRIVATE", "EC PRIVATE", "OPENSSH PRIVATE"])
        body = base64.b64encode(rng.randbytes(rng.choice([121, 300, 600]))).decode()
        lines = [body[i:i + 64] for i in range(0, len(body), 64)]
        head = "-----" + "BEGIN " + label + " KEY" + "-----"
        tail = "-----" + "END " + label + " KEY" + "-----"
        return "\n".join([head, *lines, tail])
    if entity == "JWT":
        header = {"alg": rng.choice(["HS256", "RS256", "ES256"]), "typ": "JWT"}
        payload = {"sub": str(rng.randint(1, 10**9)), "name": fake.name(), "iat": rng.randint(1.6e9, 1.8e9)}
        style = rng.random()
        if style < 0.2:  # pretty-printed header (`ewog…`)
            head = json.dumps(header, indent=rng.choice([2, 4]))
        elif style < 0.3:  # `{ "alg": … }` (`eyAi…`)
            head = json.dumps(header).replace("{", "{ ", 1)
        else:
            head = json.dumps(header, separators=(",", ":"))
        parts = [b64url(head.encode()), b64url(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())]
        if rng.random() < 0.15:  # unsigned, two segments
            return ".".join(parts) + rng.choice(["", "."])
        return ".".join(parts + [b64url(rng.randbytes(32))])
    if entity == "OPENAI_KEY":
        kind = rng.choice(["classic", "proj", "svcacct", "admin"])
        marker = "T3Blbk" + "FJ"
        if kind == "classic":
            return "sk" + "-" + rand(rng, B62, 20) + marker + rand(rng, B62, 20)
        return "sk" + "-" + kind + "-" + rand(rng, B62 + "_-", 74) + marker + rand(rng, B62 + "_-", 74)
    if entity == "ANTHROPIC_KEY":
        kind = rng.choice(["api03", "admin01"])
        return "sk" + "-ant-" + kind + "-" + rand(rng, B62 + "_-", 93) + "AA"
    if entity == "GITHUB_TOKEN":
        if rng.random() < 0.75:
            body = rand(rng, B62, 30)
            return "gh" + rng.choice("pousr") + "_" + body + base62_6(zlib.crc32(body.encode()))
        return "github" + "_pat_" + rand(rng, B62, 22) + "_" + rand(rng, B62, 59)
    if entity == "SLACK_TOKEN":
        kind = rng.choice(["b", "p", "app", "e", "o"])
        if kind in ("e", "o"):
            return "xox" + kind + "-" + rand(rng, string.digits, 12) + "-" + rand(rng, string.digits, 12) + "-" + rand(rng, B62, 32)
        if kind == "b":
            return "xox" + "b-" + rand(rng, string.digits, 12) + "-" + rand(rng, string.digits, 13) + "-" + rand(rng, B62, 24)
        if kind == "p":
            return ("xox" + "p-" + rand(rng, string.digits, 12) + "-" + rand(rng, string.digits, 12) + "-"
                    + rand(rng, string.digits, 13) + "-" + rand(rng, "0123456789abcdef", 32))
        return "xa" + "pp-1-" + "A" + rand(rng, string.ascii_uppercase + string.digits, 10) + "-" + rand(rng, string.digits, 13) + "-" + rand(rng, "0123456789abcdef", 64)
    if entity == "STRIPE_KEY":
        return rng.choice(["sk", "rk"]) + "_" + rng.choice(["live", "test", "prod"]) + "_" + rand(rng, B62, rng.choice([24, 99]))
    if entity == "GOOGLE_API_KEY":
        return "AI" + "za" + rand(rng, B62 + "_-", 35)
    if entity in KEY_FAMILIES:
        return key_family(entity, rng)
    if entity == "TOLLGATE_KEY":
        head = "tgk_" + rng.choice(["live", "test"]) + "_" + rand(rng, B62, 12) + rand(rng, B62, 32)
        return head + base62_6(zlib.crc32(head.encode()))
    raise KeyError(entity)


# Passwords people choose around a common word (issue 11: a rule that drops every value
# holding `password` or `secret` misses exactly these).
PW_WORDS = ["Password", "Secret", "Summer", "Welcome", "Cleartext", "MySecret", "Dragon", "Admin", "Spring"]
PW_TAILS = ["Pass", "Password", "Key", ""]


def human_password(rng):
    word = rng.choice(PW_WORDS) + rng.choice(PW_TAILS)
    digits = str(rng.choice([1, 12, 123, 42, 99, 2024, 2025, rng.randint(1, 9999)]))
    return word + rng.choice(["", "#", "!", "@", "_"]) + digits + rng.choice(["", "!", "$", "?"])


HEX = "0123456789abcdef"
UP36 = string.ascii_uppercase + string.digits


def uuid_str(rng) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def key_family(entity, rng):
    """A key in the family's documented shape (README table), random body."""
    if entity == "HUGGINGFACE_TOKEN":
        return rng.choice(["hf", "api_org"]) + "_" + rand(rng, string.ascii_letters, 34)
    if entity == "GROQ_KEY":
        return "gs" + "k_" + rand(rng, B62, 52)
    if entity == "XAI_KEY":
        return "xa" + "i-" + rand(rng, B62, 80)
    if entity == "OPENROUTER_KEY":
        return "sk" + "-or-v1-" + rand(rng, HEX, 64)
    if entity == "DEEPSEEK_KEY":
        while True:
            v = rand(rng, HEX, 32)
            if any(c.isdigit() for c in v) and any(c.isalpha() for c in v):
                return "sk" + "-" + v
    if entity == "PERPLEXITY_KEY":
        return "pp" + "lx-" + rand(rng, B62, 48)
    if entity == "REPLICATE_TOKEN":
        return "r8" + "_" + rand(rng, B62, 37)
    if entity == "PINECONE_KEY":
        return "pc" + "sk_" + rand(rng, B62, rng.choice([5, 6])) + "_" + rand(rng, B62, 63)
    if entity == "LANGSMITH_KEY":
        return "ls" + "v2_" + rng.choice(["pt", "sk"]) + "_" + rand(rng, HEX, 32) + "_" + rand(rng, HEX, 10)
    if entity == "AWS_BEDROCK_KEY":
        if rng.random() < 0.5:
            return "AB" + "SK" + base64.b64encode(("BedrockAPIKey-" + rand(rng, B62, rng.choice([70, 120]))).encode()).decode()
        url = "bedrock.amazonaws.com/?Action=CallWithBearerToken&X-Amz-Credential=" + rand(rng, UP36, 20) + "&X-Amz-Signature=" + rand(rng, HEX, 64)
        return "bedrock-api" + "-key-" + base64.b64encode(url.encode()).decode()
    if entity == "GITLAB_TOKEN":
        kind = rng.choice(["glpat", "glpat", "gldt", "glrt", "routable"])
        if kind == "routable":
            return "gl" + "pat-" + rand(rng, B62 + "_-", 27) + "." + "01" + rand(rng, string.ascii_lowercase + string.digits, 7)
        return kind + "-" + rand(rng, B62, 20)
    if entity == "NPM_TOKEN":
        return "np" + "m_" + rand(rng, B62, 36)
    if entity == "PYPI_TOKEN":
        return "py" + "pi-AgEIcHlwaS5vcmc" + rand(rng, B62 + "_-", rng.choice([70, 160]))
    if entity == "TWILIO_KEY":
        return "S" + "K" + rand(rng, HEX, 32)
    if entity == "SENDGRID_KEY":
        return "S" + "G." + rand(rng, B62 + "_-", 22) + "." + rand(rng, B62 + "_-", 43)
    if entity == "DATABRICKS_TOKEN":
        return "da" + "pi" + rand(rng, HEX, 32)
    if entity == "SUPABASE_KEY":
        if rng.random() < 0.5:
            return "sb" + "p_" + rand(rng, HEX, 40)
        return "sb_" + "secret_" + rand(rng, B62 + "_-", 31)
    if entity == "SENTRY_TOKEN":
        if rng.random() < 0.5:
            return "sntr" + "yu_" + rand(rng, HEX, 64)
        claims = json.dumps({"iat": rng.randint(1.6e9, 1.8e9), "url": "https://sentry.io", "region_url": "https://us.sentry.io", "org": "acme"})
        return "sntr" + "ys_" + base64.b64encode(claims.encode()).decode() + "_" + rand(rng, B62, 43)
    if entity == "TELEGRAM_BOT_TOKEN":
        return str(rng.randint(10**7, 10**10 - 1)) + ":" + "A" + "A" + rand(rng, B62 + "_-", 33)
    if entity == "AZURE_CLIENT_SECRET":
        return rand(rng, B62, 3) + rng.choice(string.digits) + "Q" + "~" + rand(rng, B62 + "_~.-", 34)
    if entity == "AZURE_OPENAI_KEY":
        return (rand(rng, B62, 52) + "JQQJ9" + rng.choice("9DH") + rand(rng, B62, 1) + rng.choice("ABCDEFGHIJKL")
                + rand(rng, B62, 16) + rng.choice(string.ascii_letters) + rand(rng, B62, 7))
    if entity == "WEBHOOK_URL":
        kind = rng.choice(["slack", "discord", "teams"])
        if kind == "slack":
            return "https://hooks" + ".slack.com/services/T" + rand(rng, UP36, 10) + "/B" + rand(rng, UP36, 10) + "/" + rand(rng, B62, 24)
        if kind == "discord":
            return "https://discord" + ".com/api/webhooks/" + rand(rng, string.digits, 19) + "/" + rand(rng, B62 + "_-", 68)
        return ("https://" + rng.choice(["acme", "contoso"]) + ".webhook" + ".office.com/webhookb2/" + uuid_str(rng) + "@" + uuid_str(rng)
                + "/IncomingWebhook/" + rand(rng, HEX, 32) + "/" + uuid_str(rng))
    raise KeyError(entity)


def generic_value(rng):
    """A generated credential without a prefix, in the alphabets services use."""
    kind = rng.choice(["b62", "b62", "hex32", "hex40", "hex64", "b64", "dashed"])
    if kind == "b62":
        while True:
            v = rand(rng, B62, rng.choice([20, 24, 32, 40, 48]))
            if any(c.isdigit() for c in v):
                return v
    if kind.startswith("hex"):
        return rand(rng, HEX, int(kind[3:]))
    if kind == "b64":
        return base64.b64encode(rng.randbytes(rng.choice([30, 33, 45]))).decode().rstrip("=")
    return "-".join(rand(rng, B62, 8) for _ in range(4))


def street_address(rng, fake_en, fake_ja):
    """Japanese (Faker ja_JP: prefecture, municipality, town, chome/ban/go, building and
    room, sometimes hyphenated `1-2-3`) or English with a unit or a City, ST ZIP line."""
    if rng.random() < 0.6:
        if rng.random() < 0.25:
            # no prefecture: a city (`我孫子市`, `あきる野市`) or a district's town first, then
            # a full block number, sometimes after a space
            city = fake_ja.city()
            while not (city.endswith("市") or "郡" in city):
                city = fake_ja.city()
            sep = " " if rng.random() < 0.3 else ""
            a = city + fake_ja.town() + sep + fake_ja.chome() + fake_ja.ban() + fake_ja.gou()
            if rng.random() < 0.3:
                import re
                a = re.sub(r"(\d+)丁目(\d+)番(\d+)号", r"\1-\2-\3", a)
            return a
        a = fake_ja.address()
        if rng.random() < 0.3:  # `N丁目N番N号` written `N-N-N`
            import re
            a = re.sub(r"(\d+)丁目(\d+)番(\d+)号", r"\1-\2-\3", a)
        return a
    if rng.random() < 0.5:
        return fake_en.address().replace("\n", ", ")
    return fake_en.street_address() + ", " + fake_en.city() + ", " + fake_en.state_abbr() + " " + fake_en.zipcode()


def password(fake, rng, forbid="\"'` "):
    if rng.random() < 0.35:
        pw = human_password(rng)
        if not any(c in pw for c in forbid):
            return pw
    while True:
        pw = fake.password(length=rng.choice([10, 12, 16]), special_chars=True)
        # what people actually type between quotes or after '=': no quotes/whitespace
        if not any(c in pw for c in forbid) and pw[0] not in "$%{<[(@*":
            return pw


def url_password(fake, rng):
    # userinfo cannot hold `@ / ? # :` unescaped
    return password(fake, rng, forbid="\"'` @/?#:%[]")


# ------------------------------------------------------------------ templates

EN = {
    "CREDIT_CARD": ["Please charge my card {v} for the order.", "Card number: {v}, exp 09/27.", "My Visa is {v} — can you check why it was declined?"],
    "IBAN": ["Wire the refund to IBAN {v} please.", "Account: {v} (Deutsche Bank)", "Our bank details are {v}."],
    "US_SSN": ["My SSN is {v}.", "Social security number: {v}", "Applicant SSN {v} attached."],
    "EMAIL": ["Contact me at {v} tomorrow.", "Email: {v}", "Send the invoice to {v}, thanks."],
    "PHONE": ["Call me at {v} after 5pm.", "Phone: {v}", "You can reach the office on {v}."],
    "JP_MY_NUMBER": ["My Number: {v}", "His my number is {v}, please register it.", "MyNumber {v}"],
    "JP_CORPORATE_NUMBER": ["Corporate number: {v}", "Their corporate number is {v}.", "Invoice registration number T{v}"],
    "JP_POSTAL_CODE": ["Postal code 〒{v}, Tokyo", "Ship to 〒{v} Chiyoda-ku.", "Zip code: {v}"],
    "IP_ADDRESS": ["The request came from IP {v} at noon.", "Server address: {v}", "Block host {v} in the firewall.", "bind to {v}@eth0 failed"],
    "AWS_ACCESS_KEY": ["Here is our key {v} for the bucket.", "AWS_ACCESS_KEY_ID={v}", "use access key id {v} in the config"],
    "AWS_SECRET_KEY": ["aws_secret_access_key = {v}", "AWS_SECRET_ACCESS_KEY={v}", "The secret access key is {v} for that user."],
    "PRIVATE_KEY": ["Here is the deploy key:\n{v}\nkeep it safe", "key file contents\n{v}", "{v}"],
    "JWT": ["Authorization: Bearer {v}", "my session token is {v}, why does it expire?", "token={v}"],
    "OPENAI_KEY": ["OPENAI_API_KEY={v}", "use this key {v} in the client", "client = OpenAI(api_key=\"{v}\")"],
    "ANTHROPIC_KEY": ["ANTHROPIC_API_KEY={v}", "my key is {v}, debug this", "x-api-key: {v}"],
    "GITHUB_TOKEN": ["GITHUB_TOKEN={v}", "git clone https://{v}@github.com/acme/app.git", "token {v} has repo scope"],
    "SLACK_TOKEN": ["SLACK_BOT_TOKEN={v}", "the bot uses {v} to post", "slack token: {v}"],
    "STRIPE_KEY": ["STRIPE_SECRET_KEY={v}", "stripe.api_key = \"{v}\"", "charge it with {v} please"],
    "GOOGLE_API_KEY": ["GOOGLE_API_KEY={v}", "maps url ...&key={v}", "the api key {v} stopped working"],
    "TOLLGATE_KEY": ["TOLLGATE_KEY={v}", "Authorization: Bearer {v}", "my gateway key {v} returns 401"],
    "PASSWORD": ["password={v}", "DB_PASSWORD: {v}", "my password is {v} btw", "{{\"user\": \"admin\", \"password\": \"{v}\"}}", "Server=db;User Id=app;Password={v};", "curl -u admin:{v} https://api.internal/v1/jobs"],
    "URL_CREDENTIAL": ["DATABASE_URL=postgresql://app:{v}@db.internal:5432/app", "connect to mongodb://root:{v}@cluster0.example.mongodb.net/test", "broker: amqp://guest:{v}@mq.internal:5672/", "cache at redis://:{v}@cache.internal:6379/0", "curl https://deploy:{v}@registry.example.com/v2/"],
}
JA = {
    "CREDIT_CARD": ["カード番号は{v}です。", "クレジットカード：{v}で決済してください", "お支払いは{v}のカードでお願いします。"],
    "IBAN": ["返金先のIBANは{v}です。", "口座：{v}に振り込んでください", "振込先{v}（ドイツ銀行）"],
    "US_SSN": ["米国のSSNは{v}です。", "社会保障番号：{v}", "SSN{v}を登録しました。"],
    "EMAIL": ["メールアドレスは{v}です。", "連絡先：{v}まで", "{v}宛に送ってください。"],
    "PHONE": ["電話番号は{v}です。", "携帯：{v}までご連絡ください", "お問い合わせは{v}へ。"],
    "JP_MY_NUMBER": ["マイナンバーは{v}です。", "個人番号：{v}", "私のマイナンバー{v}を登録してください。"],
    "JP_CORPORATE_NUMBER": ["法人番号は{v}です。", "法人番号：{v}", "登録番号T{v}の請求書"],
    "JP_POSTAL_CODE": ["〒{v} 東京都千代田区千代田", "郵便番号：{v}", "住所は〒{v}大阪府大阪市北区です。"],
    "IP_ADDRESS": ["接続元IPアドレスは{v}です。", "サーバー：{v}", "{v}からのアクセスを遮断してください。"],
    "AWS_ACCESS_KEY": ["アクセスキーは{v}です。", "AWS_ACCESS_KEY_ID={v}", "キー{v}を設定しました"],
    "AWS_SECRET_KEY": ["シークレットアクセスキーは{v}です。", "aws_secret_access_key={v}", "シークレットキー：{v}"],
    "PRIVATE_KEY": ["秘密鍵です：\n{v}\n大事に保管して", "鍵ファイル\n{v}", "{v}"],
    "JWT": ["トークンは{v}です。", "Authorization: Bearer {v}", "JWT：{v}の有効期限を確認して"],
    "OPENAI_KEY": ["APIキーは{v}です。", "キー：{v}を使ってください", "OPENAI_API_KEY={v}"],
    "ANTHROPIC_KEY": ["APIキーは{v}です。", "キー：{v}で呼び出して", "ANTHROPIC_API_KEY={v}"],
    "GITHUB_TOKEN": ["トークンは{v}です。", "GITHUB_TOKEN={v}", "{v}で認証してください"],
    "SLACK_TOKEN": ["ボットトークンは{v}です。", "Slackトークン：{v}", "{v}で投稿する"],
    "STRIPE_KEY": ["Stripeの鍵は{v}です。", "シークレットキー：{v}", "{v}で決済"],
    "GOOGLE_API_KEY": ["APIキーは{v}です。", "Google APIキー：{v}", "{v}が使えません"],
    "TOLLGATE_KEY": ["ゲートウェイキーは{v}です。", "キー：{v}", "{v}で401になります"],
    "PASSWORD": ["パスワードは「{v}」です。", "パスワード：{v}", "パスワードは{v} です", "DBのpassword={v}", "curl -u admin:{v} で叩いてください"],
    "URL_CREDENTIAL": ["接続文字列はpostgresql://app:{v}@db.internal/appです。", "mongodb://admin:{v}@mongo.internal:27017 に接続", "ブローカー：amqp://guest:{v}@mq.internal:5672/"],
}

EN["STREET_ADDRESS"] = ["Please ship it to {v}.", "Address: {v}", "Our office is at {v}, see you there.", "{{\"shipping_address\": \"{v}\"}}"]
JA["STREET_ADDRESS"] = ["住所は{v}です。", "送付先：{v}", "{v}までお届けください。"]
EN["COHERE_KEY"] = ["CO_API_KEY={v}", "COHERE_API_KEY=\"{v}\"", "{{\"cohere_api_key\": \"{v}\"}}"]
EN["MISTRAL_KEY"] = ["MISTRAL_API_KEY={v}", "mistral_api_key: {v}", "{{\"mistralApiKey\": \"{v}\"}}"]
EN["VERCEL_TOKEN"] = ["VERCEL_TOKEN={v}", "vercel_token: \"{v}\"", "export VERCEL_TOKEN='{v}'"]
EN["GENERIC_SECRET"] = [
    "api_key = \"{v}\"", "{{\"apiKey\": \"{v}\"}}", "SERVICE_API_TOKEN: {v}", "CLIENT_SECRET={v}",
    "X-Api-Key: {v}", "Authorization: Bearer {v}",
    "<add key=\"ApiKey\" value=\"{v}\" />", "client_secret: '{v}'", "webhook_secret => '{v}'",
]
JA["COHERE_KEY"] = ["CohereのキーはCO_API_KEY={v}です。", "COHERE_API_KEY={v}を設定"]
JA["MISTRAL_KEY"] = ["MistralのキーはMISTRAL_API_KEY={v}です。", "mistral_api_key: {v}"]
JA["VERCEL_TOKEN"] = ["デプロイ用にVERCEL_TOKEN={v}を使います。", "vercel_token: {v}"]
JA["GENERIC_SECRET"] = ["設定はapi_key=\"{v}\"です。", "ヘッダーは Authorization: Bearer {v} です", "CLIENT_SECRET={v}を設定しました"]

for _fam, _var in KEY_FAMILIES.items():
    EN[_fam] = [_var + "={v}", "here is my key {v}, why does it return 401?", "{{\"" + _var.lower() + "\": \"{v}\"}}", "export " + _var + "=\"{v}\""]
    JA[_fam] = ["キーは{v}です。", _var + "={v}", "{v}で認証できません"]

# Encoded forms a careless or hostile caller wraps around a value (issue 11): base64 of the
# value, an invisible separator (U+2063) between every character, Arabic-Indic digits,
# Cyrillic look-alikes in a key prefix, a space between every character.
TOKEN_SECRETS = {"AWS_ACCESS_KEY", "OPENAI_KEY", "ANTHROPIC_KEY", "GITHUB_TOKEN", "SLACK_TOKEN", "STRIPE_KEY",
                 "GOOGLE_API_KEY", "TOLLGATE_KEY", "JWT", "HUGGINGFACE_TOKEN", "GROQ_KEY", "OPENROUTER_KEY",
                 "GITLAB_TOKEN", "NPM_TOKEN"}
ARABIC_OK = {"CREDIT_CARD", "US_SSN", "JP_MY_NUMBER"}
SPACED_OK = {"CREDIT_CARD", "AWS_ACCESS_KEY", "GITHUB_TOKEN", "TOLLGATE_KEY"}
CYRILLIC = {"A": "\u0410", "K": "\u041a", "S": "\u0405", "I": "\u0406"}


def encode_variant(variant: str, value: str) -> str:
    if variant == "base64":
        return base64.b64encode(value.encode()).decode()
    if variant == "invisible":
        return "\u2063".join(value)
    if variant == "arabic_digits":
        return "".join(chr(0x660 + int(c)) if c.isdigit() else c for c in value)
    if variant == "lookalike":
        return "".join(CYRILLIC.get(c, c) for c in value[:4]) + value[4:]
    if variant == "spaced":
        return " ".join(value.replace(" ", ""))
    return value


FULLWIDTH_OK = {"CREDIT_CARD", "IBAN", "US_SSN", "EMAIL", "PHONE", "JP_MY_NUMBER", "JP_CORPORATE_NUMBER", "JP_POSTAL_CODE", "IP_ADDRESS",
                "STREET_ADDRESS"}
DASH_OK = {"CREDIT_CARD", "US_SSN", "PHONE", "JP_MY_NUMBER", "JP_POSTAL_CODE"}


def to_fullwidth(s: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else ("\u3000" if c == " " else c) for c in s)


def insert_zw(s: str, rng) -> str:
    if len(s) < 4:
        return s
    chars = list(s)
    for _ in range(rng.randint(1, 3)):
        i = rng.randint(1, len(chars) - 1)
        chars.insert(i, rng.choice(ZW))
    return "".join(chars)


def make_value(entity, rng, fake_en, fake_ja):
    if entity == "CREDIT_CARD":
        return format_card(card(rng), rng)
    if entity == "IBAN":
        return iban(rng)
    if entity == "US_SSN":
        return ssn(fake_en, rng)
    if entity == "EMAIL":
        if rng.random() < 0.1:  # internationalized domain, punycode TLD
            return fake_en.user_name() + "@" + rng.choice(["xn--d1acufc.xn--p1ai", "xn--80ak6aa92e.xn--p1ai", "example.xn--fiqs8s"])
        return (fake_en if rng.random() < 0.5 else fake_ja).email()
    if entity == "PHONE":
        return jp_phone(rng) if rng.random() < 0.55 else us_phone(rng)
    if entity == "JP_MY_NUMBER":
        return my_number(rng)
    if entity == "JP_CORPORATE_NUMBER":
        return corporate_number(rng)
    if entity == "JP_POSTAL_CODE":
        pc = fake_ja.postcode()
        return pc if rng.random() < 0.8 else pc.replace("-", "")
    if entity == "IP_ADDRESS":
        return ip(fake_en, rng)
    if entity == "STREET_ADDRESS":
        return street_address(rng, fake_en, fake_ja)
    if entity == "PASSWORD":
        return password(fake_en, rng)
    if entity == "URL_CREDENTIAL":
        return url_password(fake_en, rng)
    if entity == "COHERE_KEY":
        return rand(rng, B62, 40)
    if entity == "MISTRAL_KEY":
        return rand(rng, B62, 32)
    if entity == "VERCEL_TOKEN":
        return rand(rng, B62, 24)
    if entity == "GENERIC_SECRET":
        return generic_value(rng)
    return secret(entity, rng, fake_en)


def render(template: str, value: str, entity: str):
    """Returns (text, start, end) in code points."""
    pre, post = template.split("{v}", 1)
    pre = pre.replace("{{", "{").replace("}}", "}")
    post = post.replace("{{", "{").replace("}}", "}")
    if entity == "JP_CORPORATE_NUMBER" and pre.endswith("T"):
        pass  # span is the 13 digits
    return pre + value + post, len(pre), len(pre) + len(value)


def as_json_doc(pre: str, value: str, post: str):
    """Embed the text as a chat message inside a JSON request body."""
    head = '{"model":"gpt-4o","messages":[{"role":"user","content":"'
    a = json.dumps(pre, ensure_ascii=False)[1:-1]
    v = json.dumps(value, ensure_ascii=False)[1:-1]
    b = json.dumps(post, ensure_ascii=False)[1:-1]
    text = head + a + v + b + '"}]}'
    json.loads(text)
    s = len(head) + len(a)
    return text, s, s + len(v)


def positives(seed: int = 20240601, per_cell: int = 12):
    rng = random.Random(seed)
    fake_en = Faker("en_US")
    fake_ja = Faker("ja_JP")
    fake_en.seed_instance(seed)
    fake_ja.seed_instance(seed + 1)
    docs = []
    for entity in ENTITIES:
        for lang, table in (("en", EN), ("ja", JA)):
            variants = ["plain", "zero_width", "json"]
            if lang == "ja":
                variants.append("nospace")
            if entity in FULLWIDTH_OK:
                variants.append("fullwidth")
            if entity in DASH_OK:
                variants.append("dashes")
            if entity in ("CREDIT_CARD", "JP_MY_NUMBER", "IBAN", "PHONE", "US_SSN"):
                variants.append("nbsp")
            if entity in TOKEN_SECRETS:
                variants += ["base64", "invisible"]
            if entity == "AWS_ACCESS_KEY":
                variants.append("lookalike")
            if entity in ARABIC_OK:
                variants.append("arabic_digits")
            if entity in SPACED_OK:
                variants.append("spaced")
            for variant in variants:
                n = 0
                attempts = 0
                while n < per_cell and attempts < per_cell * 50:
                    attempts += 1
                    value = make_value(entity, rng, fake_en, fake_ja)
                    template = rng.choice(table[entity])
                    if variant == "fullwidth":
                        value = to_fullwidth(value)
                    elif variant == "dashes":
                        if "-" not in value:
                            continue
                        d = rng.choice(DASHES)
                        value = value.replace("-", d)
                    elif variant == "zero_width":
                        value = insert_zw(value, rng)
                    elif variant in ("base64", "invisible", "arabic_digits", "lookalike", "spaced"):
                        value = encode_variant(variant, value)
                    elif variant == "nbsp":
                        if " " not in value:
                            continue
                        value = value.replace(" ", "\u00a0")
                    if variant == "nospace":
                        # Japanese written with no spaces around the value
                        # (only next to Japanese characters: ASCII words keep their spaces)
                        i = template.index("{v}")
                        if i >= 2 and template[i - 1] == " " and ord(template[i - 2]) > 127:
                            template = template[: i - 1] + template[i:]
                        j = template.index("{v}") + 3
                        if j + 1 < len(template) and template[j] == " " and ord(template[j + 1]) > 127:
                            template = template[:j] + template[j + 1:]
                    pre, post = template.split("{v}", 1)
                    pre = pre.replace("{{", "{").replace("}}", "}")
                    post = post.replace("{{", "{").replace("}}", "}")
                    if variant == "json":
                        text, s, e = as_json_doc(pre, value, post)
                    else:
                        text, s, e = pre + value + post, len(pre), len(pre) + len(value)
                    docs.append(Doc(text, [(entity, s, e)], lang, variant, "pos", entity))
                    n += 1
    return docs


# ------------------------------------------------------------------ negatives


def card_brand_like(d: str) -> bool:
    for prefixes, lengths in CARD_BRANDS:
        if len(d) in lengths and any(d.startswith(p) for p in prefixes):
            return True
    return d.startswith(("2131", "1800")) and len(d) == 15


def negatives(seed: int = 7, n: int = 40):
    rng = random.Random(seed)
    fake_en = Faker("en_US")
    fake_ja = Faker("ja_JP")
    fake_en.seed_instance(seed)
    fake_ja.seed_instance(seed + 1)
    docs = []

    def add(group, text, lang="en"):
        docs.append(Doc(text, [], lang, "neg", "neg", group))

    for _ in range(n):
        # Luhn-failing 16-digit numbers, grouped and not
        c = card(rng)
        while len(c) != 16:
            c = card(rng)
        bad = c[:-1] + str((int(c[-1]) + rng.randint(1, 9)) % 10)
        assert not luhn_ok(bad)
        add("luhn_fail", f"Reference {format_card(bad, rng)} was not a card.")
        add("luhn_fail", f"カード番号{bad}は無効です。", "ja")
        # check-digit failing My Number / corporate number, even with context
        body = rand(rng, string.digits, 11)
        good = std_in.calc_check_digit(body)
        wrong = str((int(good) + rng.randint(1, 9)) % 10)
        add("check_digit_fail", f"マイナンバー：{body}{wrong}", "ja")
        add("check_digit_fail", f"My Number {body[:4]} {body[4:8]} {body[8:]}{wrong}")
        while True:
            body = rand(rng, string.digits, 12)
            good = std_cn.calc_check_digit(body)
            wrong = str((int(good) + rng.randint(1, 8)) % 10)
            cand = wrong + body
            if not std_cn.is_valid(cand) and not (luhn_ok(cand) and card_brand_like(cand)):
                break
        add("check_digit_fail", f"法人番号は{cand}です。", "ja")
        # UUIDs, git hashes
        add("uuid", f"request id {uuid.UUID(int=rng.getrandbits(128), version=4)} failed")
        add("uuid", f"ID：{uuid.UUID(int=rng.getrandbits(128), version=4)}のジョブが完了しました", "ja")
        h = "%040x" % rng.getrandbits(160)
        add("git_hash", f"fixed in commit {h} (short {h[:7]})")
        add("git_hash", f"コミット{h[:12]}で修正しました。", "ja")
        # timestamps
        ts = rng.randint(1_500_000_000, 1_800_000_000)
        add("timestamp", f"created_at={ts} updated_at_ms={ts * 1000 + rng.randint(0, 999)}")
        add("timestamp", f"{fake_en.date_time().isoformat()}Z job finished; next run {fake_en.date()} {fake_en.time()}")
        add("timestamp", f"{fake_ja.date()} {fake_ja.time()}に実行しました。タイムスタンプ{ts}", "ja")
        # ISBNs
        core = "978" + rand(rng, string.digits, 9)
        s = sum(int(x) * (1 if i % 2 == 0 else 3) for i, x in enumerate(core))
        isbn = core + str((10 - s % 10) % 10)
        add("isbn", f"ISBN {isbn[:3]}-{isbn[3]}-{isbn[4:6]}-{isbn[6:12]}-{isbn[12]} and ISBN {isbn}")
        add("isbn", f"書籍（ISBN{isbn}）を注文しました。", "ja")
        # order numbers
        add("order", f"Your Amazon order #{rand(rng, string.digits, 3)}-{rand(rng, string.digits, 7)}-{rand(rng, string.digits, 7)} has shipped.")
        add("order", f"Order ORD-{rng.randint(2019, 2026)}-{rand(rng, string.digits, 6)} confirmed, tracking 1Z{rand(rng, string.ascii_uppercase + string.digits, 16)}")
        add("order", f"注文番号：{rng.randint(2019, 2026)}{rand(rng, string.digits, 4)}-{rand(rng, string.digits, 6)}を承りました。", "ja")
        # placeholder keys
        for ph in [
            "sk" + "-" + "x" * rng.randint(20, 48),
            "sk" + "-...",
            "sk" + "-your-api-key-here",
            "sk" + "-proj-" + "X" * 40,
            "sk" + "-" + "1234567890abcdef" * 2,
            "AKIA" + "IOSFODNN7" + "EXAMPLE",
            "gh" + "p_" + "x" * 36,
            "gh" + "p_" + rand(rng, B62, 36),  # checksum fails (almost surely)
            "xox" + "b-your-bot-token",
            "tgk_" + "live_" + rand(rng, B62, 50),  # checksum fails (almost surely)
            "AI" + "za" + "X" * 35,
            "sk" + "_live_" + "x" * 24,
            "password: ********",
            "password=${DB_PASSWORD}",
            "password = os.environ['DB_PASSWORD']",
            "-----" + "BEGIN " + "PRIVATE" + " KEY" + "-----\n...\n-----" + "END " + "PRIVATE" + " KEY" + "-----",
            "eyJ" + "mb28iOiJiYXIifQ" + "." + "eyJzdWIiOiIxIn0" + "." + "c2ln",  # header has no "alg"
        ]:
            add("placeholder", f"Set OPENAI_API_KEY (e.g. {ph}) before running.")
        for ph in [
            "hf_" + "x" * 34, "hf_YOUR_TOKEN_HERE", "api_org_" + "X" * 34, "gs" + "k_" + "x" * 52, "gs" + "k_your_groq_api_key",
            "xa" + "i-" + "x" * 80, "sk" + "-or-v1-" + "0" * 64, "sk" + "-or-v1-...", "sk" + "-" + "a" * 32,
            "pp" + "lx-" + "x" * 48, "pp" + "lx-your-key", "r8" + "_" + "x" * 37, "pc" + "sk_xxxxx_" + "x" * 63,
            "ls" + "v2_pt_" + "0" * 32 + "_" + "0" * 10, "AB" + "SK" + "Q" * 120, "bedrock-api" + "-key-",
            "gl" + "pat-" + "x" * 20, "gl" + "pat-XXXXXXXXXXXXXXXXXXXX", "np" + "m_" + "x" * 36, "py" + "pi-AgEIcHlwaS5vcmc...",
            "S" + "K" + "x" * 32, "S" + "G.xxxxxxxx.yyyyyyyy", "da" + "pi" + "x" * 32, "sb" + "p_" + "0" * 40,
            "sb_" + "publishable_" + rand(rng, B62, 31), "sntr" + "yu_" + "0" * 64,
            "1234567890:" + "A" + "A" + "x" * 33, "abc1" + "Q" + "~" + "x" * 34,
            "https://hooks" + ".slack.com/services/T00000000/B00000000/" + "X" * 24,
            "https://discord" + ".com/api/webhooks/{webhook_id}/{webhook_token}",
        ]:
            add("placeholder", f"Set the key (e.g. {ph}) in your .env file.")
        # key-like names whose values are placeholders, references, identifiers, paths,
        # counts or other non-credentials (the generic assignment rule must stay quiet)
        for ph in [
            '"max_tokens": 1024, "prompt_tokens": 87', "tokenizer: cl100k_base", 'api_key = os.environ["OPENAI_API_KEY"]',
            "OPENAI_API_KEY=your-api-key-here", 'api_key: "<TOKEN>"', "token: ${API_KEY}", "secret: changeme",
            '"apiKey": "xxxx-xxxx-xxxx-xxxx"', "Authorization: Bearer <token>", "Authorization: Bearer $TOKEN",
            "curl -u user:password https://api.example.com", "curl -u $USER:$PASS https://api.example.com",
            '<add key="ApiKey" value="{{ApiKey}}" />', f'cache_key = "user:{rng.randint(1, 99999)}:profile"',
            f'next_page_token: "{rand(rng, B62, 24)}"', 'model: "models/gemini-1.5-pro-latest"',
            "secret_name: prod/db/credentials", f"key_id: {rng.randint(1000, 9999)}",
            f"public_key: ssh-ed25519 {rand(rng, B62, 68)} ci@example", f'idempotency_key: "{uuid_str(rng)}"',
            "token_type: Bearer", "access_token_url: https://auth.example.com/oauth/token",
            "api_key = getApiKeyFromEnvironment()", "SECRET_KEY = settings.SECRET_KEY", "apiKey: process.env.API_KEY",
            "the token limit is 8192 tokens; Key points: none", "CO_API_KEY=your_cohere_key", "MISTRAL_API_KEY=xxxxxxxx",
        ]:
            add("placeholder", f"config: {ph}")
        # look-alikes of the new prefixes in ordinary identifiers and tracking numbers
        add("lookalike", f"SKU {rand(rng, HEX, 32)} and sku-{rand(rng, string.digits, 8)}; self.hf_model_name; npm_config_cache")
        add("lookalike", f"the ratio was 16:9 at 12:{rng.randint(10, 59)}; Q~ is not a key; gsk_test, r8_model, dapi_version")
        add("placeholder", "パスワード：（未設定）、APIキーは sk" + "-xxxxxxxxxxxxxxxxxxxxxxxx のように設定します。", "ja")
        # URL userinfo that holds no chosen password (never an e-mail either), and
        # password values that are placeholders, references, masks or code
        for ph in [
            "https://username:password@host.example.com/",
            "postgres://postgres:postgres@localhost:5432/db",
            "amqp://guest:guest@localhost:5672/",
            "redis://:${REDIS_PASSWORD}@cache:6379",
            "mysql://root:<password>@db:3306/app",
            "mongodb://user:pass@localhost/test",
            "https://" + rng.choice(["alice", "deploy", "ci"]) + "@git.example.com/repo.git",
        ]:
            add("url_placeholder", f"Use a URL like {ph} in your config.")
        for ph in [
            "password: your-password-here", "PASSWORD=changeme", 'password = "MySecretPassword"',
            '"password": "string"', "password: null", "password: <password>",
            'password: "{{ vault_db_password }}"', "password: !vault |", "password=%(db_password)s",
            "password: process.env.DB_PASSWORD", "password = settings.DB_PASSWORD",
            "password = getpass.getpass()", "DB_PASSWORD=CHANGE_ME", "password: YourPassword",
            "Reset your password: click the link below.", "The password is incorrect, try again.",
        ]:
            add("placeholder", f"Example config: {ph}")
        add("placeholder", "パスワード：your_password_here（変更してください）", "ja")
        add("placeholder", "Enter your password: and then press enter. The password is required.")
        # documentation IP ranges and version strings
        add("doc_ip", f"Example: ping 192.0.2.{rng.randint(1, 254)} or 198.51.100.{rng.randint(1, 254)} or 203.0.113.{rng.randint(1, 254)}")
        add("doc_ip", f"IPv6 docs use 2001:db8::{rng.randint(1, 9999):x} and 2001:db8:{rng.randint(1, 65535):x}::1")
        add("version", f"Upgraded to version {rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 20)}.{rng.randint(0, 99)}; Chrome/{rng.randint(100, 130)}.0.{rng.randint(1000, 6999)}.{rng.randint(10, 200)}")
        add("version", f"バージョン{rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}にアップデートしました", "ja")
        add("version", f"see section {rng.randint(1, 9)}.{rng.randint(1, 9)}.{rng.randint(1, 9)}.{rng.randint(1, 9)} of the spec")
        # code-ish look-alikes
        add("code", f"std::vector<int> v; a::b::c(); color #{rand(rng, '0123456789abcdef', 6)}; mac {':'.join(rand(rng, '0123456789abcdef', 2) for _ in range(6))}")
        add("code", f"time {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}, ratio 16:9, price ¥{rng.randint(1000, 999999):,}")
        add("code", f"icon@2x.png and @media screen; user@localhost; {rng.randint(10, 99)}% done")
        # encoded look-alikes that hold nothing: base64 of prose and of binary, spaced
        # letters, Russian words made of look-alike letters, dotted Luhn failures,
        # percent-encoded URLs
        add("encoded", f"attachment {base64.b64encode(fake_en.sentence().encode()).decode()} (decoded: a sentence)")
        add("encoded", f"image bytes {base64.b64encode(rng.randbytes(rng.choice([30, 60, 120]))).decode()}")
        add("encoded", "spell it: " + " ".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(10, 24))))
        add("encoded", "\u0410\u041a\u0421\u0418\u042f \u0438 \u0422\u041e\u041a\u0415\u041d \u041e\u0422\u041a\u0420\u042b\u0422, \u0432\u0435\u0440\u0441\u0438\u044f " + str(rng.randint(1, 99)))
        add("encoded", f"ref {format_card(bad, rng).replace(' ', '.').replace('-', '.')} is not a card")
        add("encoded", f"https://example.org/search?q={quote(fake_en.sentence())}&page={rng.randint(1, 9)}")
        # ordinary prose
        add("prose", fake_en.paragraph(nb_sentences=5))
        add("prose", fake_ja.text(200), "ja")
        # places without a block number (prefecture + municipality) are not street addresses
        add("prose", f"{fake_ja.prefecture()}{fake_ja.city()}に住んでいます。人口は{rng.randint(10000, 9999999)}人です。", "ja")
        add("place", f"{fake_ja.prefecture()}では{fake_ja.date()}に開催、{fake_ja.prefecture()}{fake_ja.city()}の{rng.randint(1, 12)}月の売上は{rng.randint(1, 40)}%増", "ja")
        add("place", f"{fake_ja.city()}の第{rng.randint(1, 4)}四半期、{rng.randint(1, 9)}-{rng.randint(1, 9)}月は好調", "ja")
        # a city with no prefecture before it, then a score, a version or a date range
        add("place", f"{fake_ja.city()}民の{rng.randint(1, 19)}-{rng.randint(0, 9)}で勝利、{fake_ja.city()}のバージョン{rng.randint(1, 9)}-{rng.randint(0, 9)}-{rng.randint(0, 9)}を使う", "ja")
        add("place", f"{fake_ja.city()}で{rng.randint(1, 12)}-{rng.randint(1, 28)}に開催、都市伝説は{rng.randint(2, 9)}-{rng.randint(2, 9)}回", "ja")
        add("place", f"use the {rng.randint(2, 9)} Way handshake; we bought {rng.randint(10, 99)} {fake_en.last_name()} Street shares; build {rng.randint(2019, 2026)} Green Park notes")
    return docs


def maestro_positives(seed: int = 99, n: int = 36):
    """12-digit Maestro cards (valid per ISO/IEC 7812) with a card word before them."""
    rng = random.Random(seed)
    docs = []
    en = ["Maestro card {v}, expires 09/27", "debit card number: {v}", "Pay with card {v} please"]
    ja = ["カード番号：{v}", "デビットカード{v}で決済", "決済カードは{v}です"]
    for lang, table in (("en", en), ("ja", ja)):
        for _ in range(n):
            d = luhn_complete(rng.choice(["50", "56", "57", "58", "6304", "6390"]), 12, rng)
            v = d if rng.random() < 0.5 else " ".join([d[:4], d[4:8], d[8:]])
            pre, post = rng.choice(table).split("{v}")
            docs.append(Doc(pre + v + post, [("CREDIT_CARD", len(pre), len(pre) + len(v))], lang, "maestro12", "pos", "CREDIT_CARD"))
    return docs


def shape_negatives(seed: int = 5, n: int = 40):
    """False alarms of issue 11: 4-4-4 numbers with a lucky My Number check digit and no
    context, digit groups inside an IBAN whose check fails, 10-digit numbers in a sentence
    about a US SSN, 12-digit Maestro-shaped order numbers without a card word."""
    rng = random.Random(seed)
    docs = []

    def add(group, text, lang="en"):
        docs.append(Doc(text, [], lang, "neg", "neg", group))

    for _ in range(n):
        body = rand(rng, string.digits, 11)
        mn = body + std_in.calc_check_digit(body)
        add("tracking", f"Tracking number {mn[:4]}-{mn[4:8]}-{mn[8:]} was delivered.")
        add("tracking", f"追跡番号 {mn[:4]} {mn[4:8]} {mn[8:]} の荷物が届きました。", "ja")
        card16 = card(rng)
        while len(card16) != 16:
            card16 = card(rng)
        cc = rng.choice(sorted(IBAN_SPECS))
        bad = cc + "00" + card16 + rand(rng, string.digits, max(0, std_iban_len(cc) - 4 - 16))
        if not std_iban.is_valid(bad):
            grouped = " ".join(bad[i:i + 4] for i in range(0, len(bad), 4))
            add("invalid_iban", f"IBAN {grouped} was rejected by the bank.")
            add("invalid_iban", f"口座番号 {bad} は無効です。", "ja")
        ten = rng.choice("23456789") + rand(rng, string.digits, 9)
        add("ssn_sentence", f"社会保障番号は{ten}ではありません。", "ja")
        add("ssn_sentence", f"The SSN field on the phone form cannot hold ten digits like {ten}.")
        m12 = luhn_complete(rng.choice(["50", "56", "57", "58"]), 12, rng)
        add("order", f"Order {m12[:4]} {m12[4:8]} {m12[8:]} shipped today.")
    return docs


def std_iban_len(cc: str) -> int:
    return 4 + sum(n for _, n in IBAN_SPECS[cc])


def corpus(seed: int = 20240601):
    return positives(seed) + maestro_positives() + negatives(seed + 1) + shape_negatives()


if __name__ == "__main__":
    import collections
    docs = corpus()
    print(len(docs), collections.Counter(d.kind for d in docs))
