"""Embedded demo parallel corpus (English <-> French / German), generated offline.

Sentences are built from hand-written templates whose slots (dates, times, prices,
quantities with units, weekday/month names, country/language/currency/city names) are
rendered per language from CLDR data through Babel, so the pairs are real language with
real reordering: date order, 12h vs 24h clocks, number formatting, adjective position,
German verb-final clauses and separable verbs.  Generation is deterministic and fast.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Callable
from decimal import Decimal
from functools import cache
from pathlib import Path

from babel import Locale
from babel.dates import format_date, format_time, get_day_names, get_month_names
from babel.numbers import (
    format_currency,
    format_decimal,
    format_percent,
    get_currency_name,
    get_decimal_symbol,
)
from babel.units import format_unit

__all__ = ["LANGS", "SPLITS", "generate_demo_pairs", "write_demo_corpus"]

LANGS = ("en", "fr", "de")  # supported languages; en paired with fr or de (either direction)
SPLITS = ("train", "val", "test")

Tri = tuple[str, str, str]  # one phrase or sentence in (en, fr, de)

# --------------------------------------------------------------------------- CLDR helpers

_SPACES = str.maketrans({"\u00a0": " ", "\u202f": " ", "\u2009": " ", "\u2007": " "})
_YEARS = (1990, 2030)
_LAST_PAST_YEAR = 2025  # upper bound for years in past-tense sentences


def _plain(text: str) -> str:
    """Replace the non-breaking / thin spaces Babel emits by plain spaces."""
    return text.translate(_SPACES)


_LOC = {lang: Locale.parse(lang) for lang in LANGS}
_WEEKDAYS = {lang: [get_day_names("wide", locale=lang)[i] for i in range(7)] for lang in LANGS}
_MONTHS = {lang: [get_month_names("wide", locale=lang)[i] for i in range(1, 13)] for lang in LANGS}


@cache
def _date_full(day: dt.date) -> Tri:
    """'Tuesday, March 3, 2026' / 'mardi 3 mars 2026' / 'Dienstag, 3. März 2026'."""
    return tuple(_plain(format_date(day, "full", locale=lang)) for lang in LANGS)


@cache
def _date_long(day: dt.date) -> Tri:
    """'March 3, 2026' / '3 mars 2026' / '3. März 2026'."""
    return tuple(_plain(format_date(day, "long", locale=lang)) for lang in LANGS)


@cache
def _month_day(day: dt.date) -> Tri:
    """'March 3' / '3 mars' / '3. März'."""
    patterns = {"en": "MMMM d", "fr": "d MMMM", "de": "d. MMMM"}
    return tuple(_plain(format_date(day, patterns[lang], locale=lang)) for lang in LANGS)


@cache
def _month_year(month: int, year: int) -> Tri:
    """'March 2026' / 'mars 2026' / 'März 2026'."""
    return tuple(f"{_MONTHS[lang][month - 1]} {year}" for lang in LANGS)


@cache
def _time(hour: int, minute: int) -> Tri:
    """'3:45 PM' / '15:45' / '15:45' (CLDR short time formats)."""
    t = dt.time(hour, minute)
    return tuple(_plain(format_time(t, "short", locale=lang)) for lang in LANGS)


@cache
def _number(value: int | Decimal) -> Tri:
    """'1,250' / '1 250' / '1.250'."""
    return tuple(_plain(format_decimal(value, locale=lang)) for lang in LANGS)


@cache
def _money(amount: Decimal, currency: str) -> Tri:
    """'$1,234.50' / '1 234,50 $US' / '1.234,50 $' (whole amounts without decimals)."""
    out = []
    for lang in LANGS:
        text = _plain(format_currency(amount, currency, locale=lang))
        if amount == amount.to_integral_value():
            text = re.sub(re.escape(get_decimal_symbol(lang)) + r"00(?!\d)", "", text)
        out.append(text)
    return tuple(out)


@cache
def _unit(value: int | Decimal, unit: str) -> Tri:
    """'12 kilometers' / '12 kilomètres' / '12 Kilometer' (CLDR long unit patterns)."""
    return tuple(_plain(format_unit(value, unit, length="long", locale=lang)) for lang in LANGS)


@cache
def _percent(value: int) -> Tri:
    """'12%' / '12 %' / '12 %'."""
    frac = Decimal(value) / 100
    return tuple(_plain(format_percent(frac, locale=lang)) for lang in LANGS)


@cache
def _currency_amount(amount: int, code: str) -> Tri:
    """'200 Swiss francs' / '200 francs suisses' / '200 Schweizer Franken'."""
    nums = _number(amount)
    return tuple(
        f"{nums[i]} {get_currency_name(code, count=amount, locale=lang)}"
        for i, lang in enumerate(LANGS)
    )


# --------------------------------------------------------------------------- lexicon


def _de_forms(nom: str, at: str, to: str, origin: str) -> dict[str, str]:
    """German phrases for a country whose name takes an article (hand-written forms)."""
    return {"nom": nom, "in": at, "to": to, "from": origin}


# Countries: (code, French class f/m/pl, English takes "the", German overrides or None).
# French: f -> en/de/la, m -> au/du/le, pl -> aux/des/les.  German default: no article.
_COUNTRY_SPEC: list[tuple[str, str, bool, dict[str, str] | None]] = [
    ("FR", "f", False, None),
    ("DE", "f", False, None),
    ("IT", "f", False, None),
    ("ES", "f", False, None),
    ("PT", "m", False, None),
    ("BE", "f", False, None),
    ("AT", "f", False, None),
    ("IE", "f", False, None),
    ("DK", "m", False, None),
    ("SE", "f", False, None),
    ("NO", "f", False, None),
    ("FI", "f", False, None),
    ("PL", "f", False, None),
    ("GR", "f", False, None),
    ("RU", "f", False, None),
    ("JP", "m", False, None),
    ("CN", "f", False, None),
    ("IN", "f", False, None),
    ("BR", "m", False, None),
    ("MX", "m", False, None),
    ("CA", "m", False, None),
    ("AR", "f", False, None),
    ("AU", "f", False, None),
    ("EG", "f", False, None),
    ("MA", "m", False, None),
    ("PE", "m", False, None),
    ("CL", "m", False, None),
    ("KR", "f", False, None),
    ("NZ", "f", False, None),
    ("IS", "f", False, None),
    ("HR", "f", False, None),
    ("RO", "f", False, None),
    ("CZ", "f", False, None),
    (
        "CH",
        "f",
        False,
        _de_forms("die Schweiz", "in der Schweiz", "in die Schweiz", "aus der Schweiz"),
    ),
    (
        "TR",
        "f",
        False,
        _de_forms("die Türkei", "in der Türkei", "in die Türkei", "aus der Türkei"),
    ),
    (
        "NL",
        "pl",
        True,
        _de_forms(
            "die Niederlande", "in den Niederlanden", "in die Niederlande", "aus den Niederlanden"
        ),
    ),
    (
        "US",
        "pl",
        True,
        _de_forms(
            "die Vereinigten Staaten",
            "in den Vereinigten Staaten",
            "in die Vereinigten Staaten",
            "aus den Vereinigten Staaten",
        ),
    ),
    (
        "GB",
        "m",
        True,
        _de_forms(
            "das Vereinigte Königreich",
            "im Vereinigten Königreich",
            "ins Vereinigte Königreich",
            "aus dem Vereinigten Königreich",
        ),
    ),
]

_FR_VOWELS = "aeiouéèêëàâîïôûœhAEIOUÉÈÊÀÂÎÔÛŒH"


def _build_countries() -> list[dict[str, Tri]]:
    """Country phrases: bare, in (locative), to (direction), from, nom (with article)."""
    out = []
    en_names, fr_names, de_names = (_LOC[lang].territories for lang in LANGS)
    for code, fr_class, en_the, de_over in _COUNTRY_SPEC:
        en = ("the " if en_the else "") + en_names[code]
        fr = fr_names[code]
        de = de_names[code]
        fr_art = {"f": "la", "m": "le", "pl": "les"}[fr_class]
        fr_in = {"f": "en", "m": "au", "pl": "aux"}[fr_class]
        fr_from = {"f": "de", "m": "du", "pl": "des"}[fr_class]
        if de_over:
            de_nom, de_in, de_to, de_from = (de_over[k] for k in ("nom", "in", "to", "from"))
        else:
            de_nom, de_in, de_to, de_from = de, f"in {de}", f"nach {de}", f"aus {de}"
        out.append(
            {
                "nom": (en, f"{fr_art} {fr}", de_nom),
                "in": (f"in {en}", f"{fr_in} {fr}", de_in),
                "to": (f"to {en}", f"{fr_in} {fr}", de_to),
                "from": (f"from {en}", f"{fr_from} {fr}", de_from),
            }
        )
    return out


_COUNTRIES = _build_countries()

_LANGUAGE_CODES = "en fr de es it pt nl pl ru ja zh ar sv da no fi el tr ko cs ro uk".split()
_LANGUAGES: list[Tri] = [
    tuple(_LOC[lang].languages[code] for lang in LANGS) for code in _LANGUAGE_CODES
]

_CURRENCY_CODES = "USD EUR GBP JPY CHF CAD AUD SEK NOK DKK PLN CZK INR BRL MXN ZAR NZD".split()
_PRICE_CURRENCIES = ("USD", "EUR", "GBP")

_CITY_ZONES = (
    "Europe/Paris Europe/Berlin Europe/London Europe/Vienna Europe/Rome Europe/Madrid "
    "Europe/Lisbon Europe/Brussels Europe/Amsterdam Europe/Prague Europe/Warsaw Europe/Athens "
    "Europe/Copenhagen Europe/Stockholm Europe/Oslo Europe/Helsinki Europe/Dublin Europe/Zurich "
    "Europe/Budapest Europe/Bucharest Europe/Istanbul Europe/Moscow America/New_York "
    "America/Chicago America/Toronto Asia/Tokyo Asia/Singapore Australia/Sydney Asia/Seoul "
    "Asia/Dubai America/Sao_Paulo"
).split()


def _city_name(zone: str, lang: str) -> str:
    """Localised exemplar city of a time zone (CLDR), falling back to the zone id."""
    city = _LOC[lang].time_zones.get(zone, {}).get("city")
    return city or zone.split("/")[-1].replace("_", " ").replace("Sao ", "São ")


_CITIES: list[Tri] = [tuple(_city_name(zone, lang) for lang in LANGS) for zone in _CITY_ZONES]
_EUROPEAN_CITIES = [c for zone, c in zip(_CITY_ZONES, _CITIES) if zone.startswith("Europe/")]

# Subjects: (en, fr, de, person, gender); person 0=1sg, 1=3sg, 2=1pl, 3=3pl.
Subject = tuple[str, str, str, int, str]
_PRONOUNS: list[Subject] = [
    ("I", "je", "ich", 0, ""),
    ("he", "il", "er", 1, "m"),
    ("she", "elle", "sie", 1, "f"),
    ("we", "nous", "wir", 2, ""),
    ("they", "ils", "sie", 3, ""),
]
_PEOPLE: list[Subject] = [
    *(
        (n, n, n, 1, "f")
        for n in "Anna Marie Sophie Julia Laura Emma Sarah Lisa Clara Nina".split()
    ),
    *(
        (n, n, n, 1, "m")
        for n in "Paul Thomas David Martin Daniel Leo Felix Simon Jan Hugo".split()
    ),
    ("my brother", "mon frère", "mein Bruder", 1, "m"),
    ("my sister", "ma sœur", "meine Schwester", 1, "f"),
    ("my father", "mon père", "mein Vater", 1, "m"),
    ("my mother", "ma mère", "meine Mutter", 1, "f"),
]
_GROUPS: list[Subject] = [
    ("my parents", "mes parents", "meine Eltern", 3, ""),
    ("our neighbors", "nos voisins", "unsere Nachbarn", 3, ""),
]
_SUBJECTS = _PRONOUNS + _PEOPLE + _GROUPS

# Verbs: en (1sg, 3sg, plural), fr and de (1sg, 3sg, 1pl, 3pl).
_VERBS: dict[str, tuple[tuple[str, str, str], tuple[str, ...], tuple[str, ...]]] = {
    "be": (("am", "is", "are"), ("suis", "est", "sommes", "sont"), ("bin", "ist", "sind", "sind")),
    "have": (
        ("have", "has", "have"),
        ("ai", "a", "avons", "ont"),
        ("habe", "hat", "haben", "haben"),
    ),
    "live": (
        ("live", "lives", "live"),
        ("habite", "habite", "habitons", "habitent"),
        ("wohne", "wohnt", "wohnen", "wohnen"),
    ),
    "travel": (
        ("am", "is", "are"),
        ("pars", "part", "partons", "partent"),
        ("reise", "reist", "reisen", "reisen"),
    ),
    "come": (
        ("come", "comes", "come"),
        ("viens", "vient", "venons", "viennent"),
        ("komme", "kommt", "kommen", "kommen"),
    ),
    "speak": (
        ("speak", "speaks", "speak"),
        ("parle", "parle", "parlons", "parlent"),
        ("spreche", "spricht", "sprechen", "sprechen"),
    ),
    "learn": (
        ("have", "has", "have"),
        ("apprends", "apprend", "apprenons", "apprennent"),
        ("lerne", "lernt", "lernen", "lernen"),
    ),
    "play": (
        ("play", "plays", "play"),
        ("joue", "joue", "jouons", "jouent"),
        ("spiele", "spielt", "spielen", "spielen"),
    ),
    "fly": (
        ("am", "is", "are"),
        ("prends", "prend", "prenons", "prennent"),
        ("fliege", "fliegt", "fliegen", "fliegen"),
    ),
    "arrive": (
        ("will", "will", "will"),
        ("arriverai", "arrivera", "arriverons", "arriveront"),
        ("komme", "kommt", "kommen", "kommen"),
    ),
    "like": (
        ("like", "likes", "like"),
        ("aime", "aime", "aimons", "aiment"),
        ("", "", "", ""),  # German uses 'gefallen' with a dative subject instead
    ),
    "drink": (
        ("drink", "drinks", "drink"),
        ("bois", "boit", "buvons", "boivent"),
        ("trinke", "trinkt", "trinken", "trinken"),
    ),
    "work": (
        ("work", "works", "work"),
        ("travaille", "travaille", "travaillons", "travaillent"),
        ("arbeite", "arbeitet", "arbeiten", "arbeiten"),
    ),
}


def _conj(verb: str, person: int) -> Tri:
    """Conjugated verb form for a subject person in (en, fr, de)."""
    en, fr, de = _VERBS[verb]
    return en[min(person, 2)], fr[person], de[person]


# Adjectives: (en, fr masc, fr fem, fr masc before vowel, French pre-noun?, German stem).
_ADJECTIVES = [
    ("red", "rouge", "rouge", "rouge", False, "rot"),
    ("black", "noir", "noire", "noir", False, "schwarz"),
    ("white", "blanc", "blanche", "blanc", False, "weiß"),
    ("green", "vert", "verte", "vert", False, "grün"),
    ("blue", "bleu", "bleue", "bleu", False, "blau"),
    ("yellow", "jaune", "jaune", "jaune", False, "gelb"),
    ("gray", "gris", "grise", "gris", False, "grau"),
    ("expensive", "cher", "chère", "cher", False, "teur"),
    ("modern", "moderne", "moderne", "moderne", False, "modern"),
    ("heavy", "lourd", "lourde", "lourd", False, "schwer"),
    ("small", "petit", "petite", "petit", True, "klein"),
    ("big", "grand", "grande", "grand", True, "groß"),
    ("new", "nouveau", "nouvelle", "nouvel", True, "neu"),
    ("old", "vieux", "vieille", "vieil", True, "alt"),
    ("beautiful", "beau", "belle", "bel", True, "schön"),
    ("pretty", "joli", "jolie", "joli", True, "hübsch"),
]

# Nouns for objects: (en, fr, fr gender, de, de gender).
_OBJECTS = [
    ("car", "voiture", "f", "Auto", "n"),
    ("coat", "manteau", "m", "Mantel", "m"),
    ("bag", "sac", "m", "Tasche", "f"),
    ("lamp", "lampe", "f", "Lampe", "f"),
    ("chair", "chaise", "f", "Stuhl", "m"),
    ("table", "table", "f", "Tisch", "m"),
    ("bicycle", "vélo", "m", "Fahrrad", "n"),
    ("watch", "montre", "f", "Uhr", "f"),
    ("book", "livre", "m", "Buch", "n"),
    ("hat", "chapeau", "m", "Hut", "m"),
    ("dress", "robe", "f", "Kleid", "n"),
    ("jacket", "veste", "f", "Jacke", "f"),
    ("umbrella", "parapluie", "m", "Regenschirm", "m"),
    ("sofa", "canapé", "m", "Sofa", "n"),
    ("computer", "ordinateur", "m", "Computer", "m"),
    ("phone", "téléphone", "m", "Telefon", "n"),
    ("suitcase", "valise", "f", "Koffer", "m"),
    ("shirt", "chemise", "f", "Hemd", "n"),
    ("bed", "lit", "m", "Bett", "n"),
    ("painting", "tableau", "m", "Gemälde", "n"),
    ("mirror", "miroir", "m", "Spiegel", "m"),
    ("carpet", "tapis", "m", "Teppich", "m"),
    ("guitar", "guitare", "f", "Gitarre", "f"),
]

_DE_DEF_NOM = {"m": "der", "f": "die", "n": "das"}
_DE_INDEF_ACC = {"m": ("einen", "en"), "f": ("eine", "e"), "n": ("ein", "es")}
_DE_INDEF_NOM = {"m": ("ein", "er"), "f": ("eine", "e"), "n": ("ein", "es")}


def _en_indef(phrase: str) -> str:
    """English indefinite article a/an before a phrase."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _object_np(noun: tuple, adj: tuple | None, case: str) -> Tri:
    """Noun phrase with optional adjective: case is 'def_nom', 'indef_acc' or 'indef_nom'."""
    en_n, fr_n, fr_g, de_n, de_g = noun
    definite = case == "def_nom"
    en = f"{adj[0]} {en_n}" if adj else en_n
    en = f"the {en}" if definite else _en_indef(en)
    fr_art = ("le" if fr_g == "m" else "la") if definite else ("un" if fr_g == "m" else "une")
    if adj is None:
        fr = f"{fr_art} {fr_n}"
    else:
        _, fr_m, fr_f, fr_mv, pre, de_stem = adj
        form = fr_f if fr_g == "f" else (fr_mv if pre and fr_n[0] in _FR_VOWELS else fr_m)
        fr = f"{fr_art} {form} {fr_n}" if pre else f"{fr_art} {fr_n} {form}"
    if definite:
        de_art, ending = _DE_DEF_NOM[de_g], "e"
    else:
        de_art, ending = (_DE_INDEF_ACC if case == "indef_acc" else _DE_INDEF_NOM)[de_g]
    de = f"{de_art} {adj[5]}{ending} {de_n}" if adj else f"{de_art} {de_n}"
    return en, fr, de


# Places with opening hours: (en, fr with article, fr gender, de with article).
_SHOPS = [
    ("the bakery", "la boulangerie", "f", "die Bäckerei"),
    ("the pharmacy", "la pharmacie", "f", "die Apotheke"),
    ("the museum", "le musée", "m", "das Museum"),
    ("the library", "la bibliothèque", "f", "die Bibliothek"),
    ("the bank", "la banque", "f", "die Bank"),
    ("the post office", "la poste", "f", "die Post"),
    ("the supermarket", "le supermarché", "m", "der Supermarkt"),
    ("the restaurant", "le restaurant", "m", "das Restaurant"),
    ("the swimming pool", "la piscine", "f", "das Schwimmbad"),
    ("the bookstore", "la librairie", "f", "die Buchhandlung"),
    ("the zoo", "le zoo", "m", "der Zoo"),
]

# Events: (en, fr with article, de with article).
_EVENTS = [
    ("the meeting", "la réunion", "die Besprechung"),
    ("the concert", "le concert", "das Konzert"),
    ("the wedding", "le mariage", "die Hochzeit"),
    ("the party", "la fête", "die Feier"),
    ("the exam", "l'examen", "die Prüfung"),
    ("the interview", "l'entretien", "das Vorstellungsgespräch"),
    ("the conference", "la conférence", "die Konferenz"),
    ("the match", "le match", "das Spiel"),
    ("the festival", "le festival", "das Festival"),
    ("the exhibition", "l'exposition", "die Ausstellung"),
]

# Things with a duration: (en, fr, de), all with articles.
_DURATIONS = [
    ("the film", "le film", "der Film"),
    ("the trip", "le voyage", "die Reise"),
    ("the course", "le cours", "der Kurs"),
    ("the flight", "le vol", "der Flug"),
    ("the concert", "le concert", "das Konzert"),
    ("the meeting", "la réunion", "die Besprechung"),
    ("the walk", "la promenade", "der Spaziergang"),
    ("the lesson", "la leçon", "die Stunde"),
    ("the game", "la partie", "das Spiel"),
    ("the drive", "le trajet", "die Fahrt"),
    ("the tour", "la visite", "die Führung"),
    ("the break", "la pause", "die Pause"),
    ("the ceremony", "la cérémonie", "die Zeremonie"),
    ("the show", "le spectacle", "die Show"),
    ("the operation", "l'opération", "die Operation"),
]

# Long things: (en, fr, de, unit).
_LENGTHS = [
    ("the trail", "le sentier", "der Wanderweg", "length-kilometer"),
    ("the road", "la route", "die Straße", "length-kilometer"),
    ("the river", "la rivière", "der Fluss", "length-kilometer"),
    ("the lake", "le lac", "der See", "length-kilometer"),
    ("the beach", "la plage", "der Strand", "length-kilometer"),
    ("the bridge", "le pont", "die Brücke", "length-meter"),
    ("the tunnel", "le tunnel", "der Tunnel", "length-meter"),
    ("the wall", "le mur", "die Mauer", "length-meter"),
    ("the pool", "le bassin", "das Becken", "length-meter"),
]

# Heavy things: (en, fr, de).
_WEIGHTS = [  # (en, fr, de, max kilograms or 0, weighed in grams?)
    ("the package", "le colis", "das Paket", 30, True),
    ("the suitcase", "la valise", "der Koffer", 30, False),
    ("the box", "la boîte", "die Kiste", 30, True),
    ("the dog", "le chien", "der Hund", 40, False),
    ("the bag", "le sac", "die Tasche", 10, True),
    ("the cake", "le gâteau", "der Kuchen", 3, True),
    ("the fish", "le poisson", "der Fisch", 5, True),
    ("the letter", "la lettre", "der Brief", 0, True),
    ("the cheese", "le fromage", "der Käse", 2, True),
    ("the cat", "le chat", "die Katze", 8, False),
    ("the bicycle", "le vélo", "das Fahrrad", 20, False),
]

# Origins for distances: (en, fr, de) and landmarks (en, fr 'de ...', de dative 'von ...').
_BUILDINGS = [
    ("the hotel", "l'hôtel", "das Hotel"),
    ("the school", "l'école", "die Schule"),
    ("the museum", "le musée", "das Museum"),
    ("the pharmacy", "la pharmacie", "die Apotheke"),
    ("the bakery", "la boulangerie", "die Bäckerei"),
    ("the hospital", "l'hôpital", "das Krankenhaus"),
    ("our apartment", "notre appartement", "unsere Wohnung"),
    ("the campsite", "le camping", "der Campingplatz"),
]
_LANDMARKS = [
    ("the station", "de la gare", "vom Bahnhof"),
    ("the beach", "de la plage", "vom Strand"),
    ("the airport", "de l'aéroport", "vom Flughafen"),
    ("the city center", "du centre-ville", "vom Stadtzentrum"),
    ("the park", "du parc", "vom Park"),
    ("the river", "de la rivière", "vom Fluss"),
    ("the church", "de l'église", "von der Kirche"),
    ("the market", "du marché", "vom Markt"),
]

_PAST_VERBS = [  # avoir + participle: (en, fr, de participle)
    ("bought", "acheté", "gekauft"),
    ("sold", "vendu", "verkauft"),
    ("found", "trouvé", "gefunden"),
    ("ordered", "commandé", "bestellt"),
    ("lost", "perdu", "verloren"),
    ("borrowed", "emprunté", "geliehen"),
]

_ACTIVITIES = [  # (en object, fr 'jouer ...' complement, de object)
    ("tennis", "au tennis", "Tennis"),
    ("chess", "aux échecs", "Schach"),
    ("volleyball", "au volley", "Volleyball"),
    ("basketball", "au basket", "Basketball"),
    ("cards", "aux cartes", "Karten"),
    ("the piano", "du piano", "Klavier"),
    ("the guitar", "de la guitare", "Gitarre"),
    ("the violin", "du violon", "Geige"),
]

_PROFESSIONALS = [  # (en, fr 'chez ...', de 'beim ...')
    ("the doctor", "chez le médecin", "beim Arzt"),
    ("the dentist", "chez le dentiste", "beim Zahnarzt"),
    ("the hairdresser", "chez le coiffeur", "beim Friseur"),
    ("the lawyer", "chez l'avocat", "beim Anwalt"),
    ("the optician", "chez l'opticien", "beim Optiker"),
    ("the vet", "chez le vétérinaire", "beim Tierarzt"),
]

_VEHICLES = [  # (en, fr, de)
    ("train", "train", "Zug"),
    ("bus", "bus", "Bus"),
    ("boat", "bateau", "Schiff"),
    ("flight", "vol", "Flug"),
]


def _stops(vehicle: Tri) -> list[Tri]:
    """Cities a vehicle plausibly goes to: trains and buses stay in Europe."""
    return _EUROPEAN_CITIES if vehicle[0] in ("train", "bus") else _CITIES


_MEALS = [  # (en, fr, de, earliest hour, latest hour)
    ("breakfast", "le petit-déjeuner", "das Frühstück", 6, 10),
    ("lunch", "le déjeuner", "das Mittagessen", 11, 14),
    ("dinner", "le dîner", "das Abendessen", 17, 21),
]

_TRENDS = [  # (en, fr, de) subjects and (en, fr, de participle) directions
    ("prices", "les prix", "die Preise"),
    ("rents", "les loyers", "die Mieten"),
    ("wages", "les salaires", "die Löhne"),
    ("sales", "les ventes", "die Umsätze"),
    ("exports", "les exportations", "die Exporte"),
    ("ticket prices", "les prix des billets", "die Ticketpreise"),
]
_TREND_VERBS = [("rose", "augmenté", "gestiegen"), ("fell", "baissé", "gesunken")]

_SETTLEMENTS = [  # (en, fr, de, inhabitants en/fr/de)
    ("the village", "le village", "das Dorf"),
    ("the town", "la ville", "die Stadt"),
    ("the island", "l'île", "die Insel"),
    ("the district", "le quartier", "das Viertel"),
]
_MEMBERS = [  # (en subject, fr subject, de subject, en noun, fr noun, de noun)
    ("the school", "l'école", "die Schule", "students", "élèves", "Schüler"),
    ("the club", "le club", "der Verein", "members", "membres", "Mitglieder"),
    ("the company", "l'entreprise", "die Firma", "employees", "employés", "Mitarbeiter"),
    ("the library", "la bibliothèque", "die Bibliothek", "books", "livres", "Bücher"),
]

_DRINKS = [("water", "eau", "Wasser"), ("milk", "lait", "Milch"), ("juice", "jus", "Saft")]

_EXCHANGE_PLACES = [
    ("at the bank", "à la banque", "bei der Bank"),
    ("at the airport", "à l'aéroport", "am Flughafen"),
    ("at the station", "à la gare", "am Bahnhof"),
    ("at the hotel", "à l'hôtel", "im Hotel"),
]

_WEATHER = [("rains", "pleut", "regnet"), ("snows", "neige", "schneit")]
_FREQUENCY = [("often", "souvent", "oft"), ("rarely", "rarement", "selten")]

# --------------------------------------------------------------------------- sampling


def _day(r: random.Random, past: bool = False) -> dt.date:
    """Random date with a year in the fixed range (only up to 2025 for past events)."""
    start = dt.date(_YEARS[0], 1, 1).toordinal()
    end = dt.date(_LAST_PAST_YEAR if past else _YEARS[1], 12, 31).toordinal()
    return dt.date.fromordinal(r.randint(start, end))


def _year(r: random.Random, past: bool = False) -> int:
    """Random year in the fixed range (only up to 2025 for past events)."""
    return r.randint(_YEARS[0], _LAST_PAST_YEAR if past else _YEARS[1])


def _clock(r: random.Random, first: int = 6, last: int = 23) -> Tri:
    """Random time of day on a 5-minute step."""
    return _time(r.randint(first, last), 5 * r.randrange(12))


def _price(r: random.Random) -> Decimal:
    """Random price: mostly small whole amounts, some with cents, some in the thousands."""
    k = r.random()
    if k < 0.55:
        return Decimal(r.randint(1, 300))
    if k < 0.85:
        return Decimal(r.randint(1, 99)) + Decimal(r.choice(("0.50", "0.99", "0.25", "0.75")))
    return Decimal(r.randrange(1000, 5001, 50))


def _weekday(r: random.Random) -> int:
    """Random weekday index (0 = Monday)."""
    return r.randrange(7)


def _partner(r: random.Random, subject: Subject) -> str:
    """A first name (same in all three languages) different from the subject."""
    return r.choice([p[0] for p in _PEOPLE[:20] if p[0] != subject[0]])


def _past_time(r: random.Random) -> Tri:
    """Adverbial of past time: 'yesterday', 'on Monday', 'in March', 'in 2015'..."""
    k = r.randrange(4)
    if k == 0:
        return r.choice(
            [
                ("yesterday", "hier", "gestern"),
                ("last week", "la semaine dernière", "letzte Woche"),
                ("last month", "le mois dernier", "letzten Monat"),
                ("last year", "l'année dernière", "letztes Jahr"),
                ("two days ago", "il y a deux jours", "vor zwei Tagen"),
                ("three weeks ago", "il y a trois semaines", "vor drei Wochen"),
            ]
        )
    if k == 1:
        d = _weekday(r)
        return (f"on {_WEEKDAYS['en'][d]}", _WEEKDAYS["fr"][d], f"am {_WEEKDAYS['de'][d]}")
    if k == 2:
        m = r.randrange(12)
        return (f"in {_MONTHS['en'][m]}", f"en {_MONTHS['fr'][m]}", f"im {_MONTHS['de'][m]}")
    y = str(_year(r, past=True))
    return (f"in {y}", f"en {y}", y)


# --------------------------------------------------------------------------- templates

Template = Callable[[random.Random], Tri]
_TEMPLATES: list[tuple[float, Template]] = []


def _template(weight: float) -> Callable[[Template], Template]:
    """Register a sentence template with a sampling weight."""

    def register(fn: Template) -> Template:
        _TEMPLATES.append((weight, fn))
        return fn

    return register


@_template(1.0)
def _t_event_full_date(r: random.Random) -> Tri:
    en, fr, de = r.choice(_EVENTS)
    d = _date_full(_day(r))
    return f"{en} is on {d[0]}.", f"{fr} a lieu le {d[1]}.", f"{de} findet am {d[2]} statt."


@_template(1.2)
def _t_event_month_year(r: random.Random) -> Tri:
    en, fr, de = r.choice(_EVENTS)
    c = r.choice(_CITIES)
    m = _month_year(r.randint(1, 12), _year(r))
    return (
        f"{en} takes place in {c[0]} in {m[0]}.",
        f"{fr} a lieu à {c[1]} en {m[1]}.",
        f"{de} findet im {m[2]} in {c[2]} statt.",
    )


@_template(0.8)
def _t_birthday(r: random.Random) -> Tri:
    name = r.choice(_PEOPLE[:20])[0]
    day = _day(r)
    d = _month_day(day)
    de_gen = name + ("'" if name[-1] in "sxz" else "s")
    if r.random() < 0.5:
        wd = day.weekday()
        return (
            f"{name}'s birthday party is on {_WEEKDAYS['en'][wd]}, {d[0]}.",
            f"La fête d'anniversaire de {name} a lieu le {_WEEKDAYS['fr'][wd]} {d[1]}.",
            f"{de_gen} Geburtstagsfeier findet am {_WEEKDAYS['de'][wd]}, {d[2]} statt.",
        )
    return (
        f"{name}'s birthday is on {d[0]}.",
        f"L'anniversaire de {name} est le {d[1]}.",
        f"{de_gen} Geburtstag ist am {d[2]}.",
    )


@_template(1.0)
def _t_born(r: random.Random) -> Tri:
    en, fr, de, _, gender = r.choice(_PEOPLE)
    d = _date_long(_day(r, past=True))
    born = "née" if gender == "f" else "né"
    if r.random() < 0.5:
        c = r.choice(_CITIES)
        return (
            f"{en} was born in {c[0]} on {d[0]}.",
            f"{fr} est {born} à {c[1]} le {d[1]}.",
            f"{de} wurde am {d[2]} in {c[2]} geboren.",
        )
    return (
        f"{en} was born on {d[0]}.",
        f"{fr} est {born} le {d[1]}.",
        f"{de} wurde am {d[2]} geboren.",
    )


@_template(0.5)
def _t_it_costs(r: random.Random) -> Tri:
    p = _money(_price(r), r.choice(_PRICE_CURRENCIES))
    k = r.randrange(3)
    if k == 0:
        return f"It costs {p[0]}.", f"Cela coûte {p[1]}.", f"Es kostet {p[2]}."
    if k == 1:
        c = r.choice(_CITIES)
        return (  # ticket prices use the general price distribution
            f"The ticket to {c[0]} costs {p[0]}.",
            f"Le billet pour {c[1]} coûte {p[1]}.",
            f"Das Ticket nach {c[2]} kostet {p[2]}.",
        )
    p = _money(Decimal(r.randrange(40, 401, 5)), r.choice(_PRICE_CURRENCIES))
    return (
        f"The room costs {p[0]} per night.",
        f"La chambre coûte {p[1]} par nuit.",
        f"Das Zimmer kostet {p[2]} pro Nacht.",
    )


@_template(0.8)
def _t_item_costs(r: random.Random) -> Tri:
    adj = r.choice(_ADJECTIVES) if r.random() < 0.7 else None
    np = _object_np(r.choice(_OBJECTS), adj, "def_nom")
    p = _money(_price(r), r.choice(_PRICE_CURRENCIES))
    if r.random() < 0.5:
        return f"{np[0]} costs {p[0]}.", f"{np[1]} coûte {p[1]}.", f"{np[2]} kostet {p[2]}."
    c = r.choice(_CITIES)
    return (  # German: verb second after the fronted place
        f"In {c[0]}, {np[0]} costs {p[0]}.",
        f"À {c[1]}, {np[1]} coûte {p[1]}.",
        f"In {c[2]} kostet {np[2]} {p[2]}.",
    )


@_template(0.8)
def _t_paid_for(r: random.Random) -> Tri:
    s = r.choice(_SUBJECTS)
    aux = _conj("have", s[3])
    adj = r.choice(_ADJECTIVES) if r.random() < 0.7 else None
    np = _object_np(r.choice(_OBJECTS), adj, "indef_acc")
    p = _money(_price(r), r.choice(_PRICE_CURRENCIES))
    if r.random() < 0.5:
        c = r.choice(_CITIES)
        return (
            f"{s[0]} paid {p[0]} for {np[0]} in {c[0]}.",
            f"{s[1]} {aux[1]} payé {p[1]} pour {np[1]} à {c[1]}.",
            f"{s[2]} {aux[2]} in {c[2]} {p[2]} für {np[2]} bezahlt.",
        )
    return (
        f"{s[0]} paid {p[0]} for {np[0]}.",
        f"{s[1]} {aux[1]} payé {p[1]} pour {np[1]}.",
        f"{s[2]} {aux[2]} {p[2]} für {np[2]} bezahlt.",
    )


@_template(0.7)
def _t_how_much(r: random.Random) -> Tri:
    adj = r.choice(_ADJECTIVES) if r.random() < 0.5 else None
    np = _object_np(r.choice(_OBJECTS), adj, "indef_nom")
    c = r.choice(_CITIES)
    return (
        f"How much does {np[0]} cost in {c[0]}?",
        f"Combien coûte {np[1]} à {c[1]} ?",
        f"Wie viel kostet {np[2]} in {c[2]}?",
    )


@_template(1.5)
def _t_past_purchase(r: random.Random) -> Tri:
    s = r.choice(_SUBJECTS)
    verb = r.choice(_PAST_VERBS)
    adj = r.choice(_ADJECTIVES) if r.random() < 0.8 else None
    np = _object_np(r.choice(_OBJECTS), adj, "indef_acc")
    aux = _conj("have", s[3])
    when = _past_time(r)
    if r.random() < 0.5:
        c = r.choice(_CITIES)
        return (  # German: time before place, participle last
            f"{s[0]} {verb[0]} {np[0]} in {c[0]} {when[0]}.",
            f"{s[1]} {aux[1]} {verb[1]} {np[1]} à {c[1]} {when[1]}.",
            f"{s[2]} {aux[2]} {when[2]} in {c[2]} {np[2]} {verb[2]}.",
        )
    return (
        f"{s[0]} {verb[0]} {np[0]} {when[0]}.",
        f"{s[1]} {aux[1]} {verb[1]} {np[1]} {when[1]}.",
        f"{s[2]} {aux[2]} {when[2]} {np[2]} {verb[2]}.",
    )


@_template(0.5)
def _t_like(r: random.Random) -> Tri:
    s = r.choice(_PRONOUNS)
    adj = r.choice(_ADJECTIVES) if r.random() < 0.8 else None
    np = _object_np(r.choice(_OBJECTS), adj, "def_nom")
    dative = {"I": "mir", "he": "ihm", "she": "ihr", "we": "uns", "they": "ihnen"}[s[0]]
    like = _conj("like", s[3])
    where = ("", "", "")
    if r.random() < 0.5:
        where = (" in the window", " dans la vitrine", " im Schaufenster")
    if r.random() < 0.5:
        return (
            f"{s[0]} {like[0]} {np[0]}{where[0]}.",
            f"{s[1]} {like[1]} {np[1]}{where[1]}.",
            f"{dative} gefällt {np[2]}{where[2]}.",
        )
    neg = "doesn't" if s[3] == 1 else "don't"
    return (
        f"{s[0]} {neg} like {np[0]}{where[0]}.",
        f"{s[1]} ne {like[1]} pas {np[1]}{where[1]}.",
        f"{dative} gefällt {np[2]}{where[2]} nicht.",
    )


@_template(0.8)
def _t_train_leaves(r: random.Random) -> Tri:
    v = r.choice(_VEHICLES[:3])
    c = r.choice(_stops(v))
    t = _clock(r)
    de_art = "das" if v[2] == "Schiff" else "der"
    return (
        f"The {v[0]} to {c[0]} leaves at {t[0]}.",
        f"Le {v[1]} pour {c[1]} part à {t[1]}.",
        f"{de_art} {v[2]} nach {c[2]} fährt um {t[2]} Uhr ab.",
    )


@_template(1.2)
def _t_arrives_weekday(r: random.Random) -> Tri:
    v = r.choice(_VEHICLES)
    c = r.choice(_stops(v))
    d = _weekday(r)
    t = _clock(r)
    de_art = "das" if v[2] == "Schiff" else "der"
    return (
        f"The {v[0]} from {c[0]} arrives on {_WEEKDAYS['en'][d]} at {t[0]}.",
        f"Le {v[1]} de {c[1]} arrive {_WEEKDAYS['fr'][d]} à {t[1]}.",
        f"{de_art} {v[2]} aus {c[2]} kommt am {_WEEKDAYS['de'][d]} um {t[2]} Uhr an.",
    )


@_template(1.2)
def _t_platform(r: random.Random) -> Tri:
    v = r.choice(_VEHICLES[:2])
    c = r.choice(_stops(v))
    t = _clock(r)
    n = r.randint(1, 20)
    return (
        f"The next {v[0]} to {c[0]} leaves from platform {n} at {t[0]}.",
        f"Le prochain {v[1]} pour {c[1]} part du quai {n} à {t[1]}.",
        f"Der nächste {v[2]} nach {c[2]} fährt um {t[2]} Uhr von Gleis {n} ab.",
    )


@_template(1.0)
def _t_when_leave(r: random.Random) -> Tri:
    v = r.choice(_VEHICLES[:3])
    a, b = r.sample(_stops(v), 2)
    de_art = "das" if v[2] == "Schiff" else "der"
    if r.random() < 0.5:
        return (
            f"When does the {v[0]} from {a[0]} to {b[0]} leave?",
            f"Quand part le {v[1]} de {a[1]} pour {b[1]} ?",
            f"Wann fährt {de_art} {v[2]} von {a[2]} nach {b[2]} ab?",
        )
    return (
        f"When does the {v[0]} from {a[0]} arrive in {b[0]}?",
        f"Quand le {v[1]} de {a[1]} arrive-t-il à {b[1]} ?",
        f"Wann kommt {de_art} {v[2]} aus {a[2]} in {b[2]} an?",
    )


@_template(0.3)
def _t_lives_in(r: random.Random) -> Tri:
    s = r.choice(_SUBJECTS)
    c = r.choice(_COUNTRIES)["in"]
    v = _conj("live", s[3])
    if r.random() < 0.5:
        return f"{s[0]} {v[0]} {c[0]}.", f"{s[1]} {v[1]} {c[1]}.", f"{s[2]} {v[2]} {c[2]}."
    return (
        f"{s[0]} now {v[0]} {c[0]}.",
        f"{s[1]} {v[1]} maintenant {c[1]}.",
        f"{s[2]} {v[2]} jetzt {c[2]}.",
    )


@_template(1.0)
def _t_lived_since(r: random.Random) -> Tri:
    s = r.choice(_SUBJECTS)
    c = r.choice(_COUNTRIES)["in"]
    v = _conj("live", s[3])
    have = _conj("have", s[3])
    y = _year(r, past=True)
    return (
        f"{s[0]} {have[0]} lived {c[0]} since {y}.",
        f"{s[1]} {v[1]} {c[1]} depuis {y}.",
        f"{s[2]} {v[2]} seit {y} {c[2]}.",
    )


@_template(1.0)
def _t_travel_month(r: random.Random) -> Tri:
    s = r.choice(_SUBJECTS)
    c = r.choice(_COUNTRIES)["to"]
    v = _conj("travel", s[3])
    m = r.randrange(12)
    if r.random() < 0.5:
        name = _partner(r, s)
        return (
            f"{s[0]} {v[0]} traveling {c[0]} with {name} in {_MONTHS['en'][m]}.",
            f"{s[1]} {v[1]} {c[1]} avec {name} en {_MONTHS['fr'][m]}.",
            f"{s[2]} {v[2]} im {_MONTHS['de'][m]} mit {name} {c[2]}.",
        )
    return (
        f"{s[0]} {v[0]} traveling {c[0]} in {_MONTHS['en'][m]}.",
        f"{s[1]} {v[1]} {c[1]} en {_MONTHS['fr'][m]}.",
        f"{s[2]} {v[2]} im {_MONTHS['de'][m]} {c[2]}.",
    )


@_template(1.0)
def _t_moved_to(r: random.Random) -> Tri:
    s = r.choice(_PRONOUNS[1:3] + _PRONOUNS[4:] + _PEOPLE + _GROUPS)
    c = r.choice(_COUNTRIES)["to"]
    m = _month_year(r.randint(1, 12), _year(r, past=True))
    if s[3] == 3:
        fr_verb, de_aux = "se sont installés", "sind"
    else:
        fr_verb, de_aux = ("s'est installée" if s[4] == "f" else "s'est installé"), "ist"
    return (
        f"{s[0]} moved {c[0]} in {m[0]}.",
        f"{s[1]} {fr_verb} {c[1]} en {m[1]}.",
        f"{s[2]} {de_aux} im {m[2]} {c[2]} gezogen.",
    )


@_template(1.2)
def _t_booked_room(r: random.Random) -> Tri:
    s = r.choice(_SUBJECTS)
    aux = _conj("have", s[3])
    c = r.choice(_CITIES)
    n = r.randint(2, 14)
    return (
        f"{s[0]} booked a room in {c[0]} for {n} nights.",
        f"{s[1]} {aux[1]} réservé une chambre à {c[1]} pour {n} nuits.",
        f"{s[2]} {aux[2]} für {n} Nächte ein Zimmer in {c[2]} gebucht.",
    )


@_template(0.3)
def _t_comes_from(r: random.Random) -> Tri:
    s = r.choice(_SUBJECTS)
    c = r.choice(_COUNTRIES)["from"]
    v = _conj("come", s[3])
    if r.random() < 0.5:
        return f"{s[0]} {v[0]} {c[0]}.", f"{s[1]} {v[1]} {c[1]}.", f"{s[2]} {v[2]} {c[2]}."
    city = r.choice(_CITIES)
    live = _conj("live", s[3])
    return (  # German: 'aber' inside the second clause
        f"{s[0]} {v[0]} {c[0]} but {live[0]} in {city[0]}.",
        f"{s[1]} {v[1]} {c[1]} mais {live[1]} à {city[1]}.",
        f"{s[2]} {v[2]} {c[2]}, {live[2]} aber in {city[2]}.",
    )


@_template(0.8)
def _t_visited(r: random.Random) -> Tri:
    s = r.choice(_SUBJECTS)
    c = r.choice(_COUNTRIES)["nom"]
    aux = _conj("have", s[3])
    y = _year(r, past=True)
    if r.random() < 0.5:
        name = _partner(r, s)
        return (
            f"{s[0]} visited {c[0]} with {name} in {y}.",
            f"{s[1]} {aux[1]} visité {c[1]} avec {name} en {y}.",
            f"{s[2]} {aux[2]} {y} mit {name} {c[2]} besucht.",
        )
    return (
        f"{s[0]} visited {c[0]} in {y}.",
        f"{s[1]} {aux[1]} visité {c[1]} en {y}.",
        f"{s[2]} {aux[2]} {y} {c[2]} besucht.",
    )


@_template(1.0)
def _t_flying_next(r: random.Random) -> Tri:
    s = r.choice(_SUBJECTS)
    c = r.choice(_CITIES)
    v = _conj("fly", s[3])
    d = _weekday(r)
    if r.random() < 0.5:
        name = _partner(r, s)
        return (
            f"{s[0]} {v[0]} flying to {c[0]} with {name} next {_WEEKDAYS['en'][d]}.",
            f"{s[1]} {v[1]} l'avion pour {c[1]} avec {name} {_WEEKDAYS['fr'][d]} prochain.",
            f"{s[2]} {v[2]} nächsten {_WEEKDAYS['de'][d]} mit {name} nach {c[2]}.",
        )
    return (
        f"{s[0]} {v[0]} flying to {c[0]} next {_WEEKDAYS['en'][d]}.",
        f"{s[1]} {v[1]} l'avion pour {c[1]} {_WEEKDAYS['fr'][d]} prochain.",
        f"{s[2]} {v[2]} nächsten {_WEEKDAYS['de'][d]} nach {c[2]}.",
    )


@_template(1.2)
def _t_arrive_date(r: random.Random) -> Tri:
    s = r.choice(_SUBJECTS)
    c = r.choice(_CITIES)
    v = _conj("arrive", s[3])
    day = _day(r)
    md = _month_day(day)
    wd = day.weekday()
    return (
        f"{s[0]} will arrive in {c[0]} on {_WEEKDAYS['en'][wd]}, {md[0]}.",
        f"{s[1]} {v[1]} à {c[1]} le {_WEEKDAYS['fr'][wd]} {md[1]}.",
        f"{s[2]} {v[2]} am {_WEEKDAYS['de'][wd]}, {md[2]} in {c[2]} an.",
    )


@_template(0.6)
def _t_speaks(r: random.Random) -> Tri:
    s = r.choice(_SUBJECTS)
    v = _conj("speak", s[3])
    k = r.randrange(4)
    if k == 3:
        a = r.choice(_LANGUAGES)
        p = r.choice(
            [
                ("at home", "à la maison", "zu Hause"),
                ("at work", "au travail", "bei der Arbeit"),
                ("at school", "à l'école", "in der Schule"),
                ("on the phone", "au téléphone", "am Telefon"),
            ]
        )
        return (  # German puts the place before the object
            f"{s[0]} {v[0]} {a[0]} {p[0]}.",
            f"{s[1]} {v[1]} {a[1]} {p[1]}.",
            f"{s[2]} {v[2]} {p[2]} {a[2]}.",
        )
    if k == 0:
        a, b = r.sample(_LANGUAGES, 2)
        return (
            f"{s[0]} {v[0]} {a[0]} and {b[0]}.",
            f"{s[1]} {v[1]} {a[1]} et {b[1]}.",
            f"{s[2]} {v[2]} {a[2]} und {b[2]}.",
        )
    a = r.choice(_LANGUAGES)
    if k == 1:
        return (
            f"{s[0]} {v[0]} {a[0]} very well.",
            f"{s[1]} {v[1]} très bien {a[1]}.",
            f"{s[2]} {v[2]} sehr gut {a[2]}.",
        )
    return (
        f"{s[0]} {v[0]} a little {a[0]}.",
        f"{s[1]} {v[1]} un peu {a[1]}.",
        f"{s[2]} {v[2]} ein wenig {a[2]}.",
    )


@_template(1.0)
def _t_learning_since(r: random.Random) -> Tri:
    s = r.choice(_SUBJECTS)
    v = _conj("learn", s[3])
    a = r.choice(_LANGUAGES)
    y = _year(r, past=True)
    return (
        f"{s[0]} {v[0]} been learning {a[0]} since {y}.",
        f"{s[1]} {v[1]} le {a[1]} depuis {y}.",
        f"{s[2]} {v[2]} seit {y} {a[2]}.",
    )


@_template(1.2)
def _t_exchanged(r: random.Random) -> Tri:
    s = r.choice(_SUBJECTS)
    aux = _conj("have", s[3])
    cur = _currency_amount(r.randrange(20, 2001, 10), r.choice(_CURRENCY_CODES))
    p = r.choice(_EXCHANGE_PLACES)
    return (
        f"{s[0]} exchanged {cur[0]} {p[0]}.",
        f"{s[1]} {aux[1]} échangé {cur[1]} {p[1]}.",
        f"{s[2]} {aux[2]} {p[2]} {cur[2]} umgetauscht.",
    )


@_template(0.8)
def _t_length(r: random.Random) -> Tri:
    en, fr, de, unit = r.choice(_LENGTHS)
    if unit == "length-kilometer":
        value: int | Decimal = r.choice((r.randint(1, 60), Decimal(r.randint(10, 99)) / 10))
    else:
        value = r.randrange(10, 1001, 5)
    u = _unit(value, unit)
    return f"{en} is {u[0]} long.", f"{fr} fait {u[1]} de long.", f"{de} ist {u[2]} lang."


@_template(0.4)
def _t_weight(r: random.Random) -> Tri:
    en, fr, de, max_kg, grams = r.choice(_WEIGHTS)
    if max_kg and (not grams or r.random() < 0.6):
        kg = r.choice((r.randint(1, max_kg), Decimal(r.randint(11, 10 * max_kg - 1)) / 10))
        u = _unit(kg, "mass-kilogram")
    else:
        u = _unit(r.randrange(20, 1000, 10), "mass-gram")
    if r.random() < 0.5:
        return f"{en} weighs {u[0]}.", f"{fr} pèse {u[1]}.", f"{de} wiegt {u[2]}."
    return (
        f"{en} weighs about {u[0]}.",
        f"{fr} pèse environ {u[1]}.",
        f"{de} wiegt etwa {u[2]}.",
    )


@_template(1.2)
def _t_distance(r: random.Random) -> Tri:
    b = r.choice(_BUILDINGS)
    lm = r.choice(_LANDMARKS)
    if r.random() < 0.6:
        u = _unit(r.randrange(50, 1000, 50), "length-meter")
    else:
        u = _unit(r.choice((r.randint(1, 30), Decimal(r.randint(11, 99)) / 10)), "length-kilometer")
    return (
        f"{b[0]} is {u[0]} from {lm[0]}.",
        f"{b[1]} est à {u[1]} {lm[1]}.",
        f"{b[2]} ist {u[2]} {lm[2]} entfernt.",
    )


@_template(0.8)
def _t_temperature(r: random.Random) -> Tri:
    c = r.choice(_CITIES)
    u = _unit(r.randint(0, 38), "temperature-celsius")
    if r.random() < 0.5:
        return (
            f"It is {u[0]} in {c[0]} today.",
            f"Il fait {u[1]} à {c[1]} aujourd'hui.",
            f"In {c[2]} sind es heute {u[2]}.",
        )
    return (
        f"It was {u[0]} in {c[0]} yesterday.",
        f"Il faisait {u[1]} à {c[1]} hier.",
        f"In {c[2]} waren es gestern {u[2]}.",
    )


@_template(0.4)
def _t_duration(r: random.Random) -> Tri:
    en, fr, de = r.choice(_DURATIONS)
    if r.random() < 0.6:
        u = _unit(r.randrange(10, 241, 5), "duration-minute")
    else:
        u = _unit(r.randint(1, 12), "duration-hour")
    if r.random() < 0.5:
        return f"{en} lasts {u[0]}.", f"{fr} dure {u[1]}.", f"{de} dauert {u[2]}."
    return (
        f"{en} lasts about {u[0]}.",
        f"{fr} dure environ {u[1]}.",
        f"{de} dauert etwa {u[2]}.",
    )


@_template(1.2)
def _t_opening_hours(r: random.Random) -> Tri:
    en, fr, gender, de = r.choice(_SHOPS)
    a = _clock(r, 6, 11)
    b = _clock(r, 12, 22)
    open_fr = "ouverte" if gender == "f" else "ouvert"
    return (
        f"{en} is open from {a[0]} to {b[0]}.",
        f"{fr} est {open_fr} de {a[1]} à {b[1]}.",
        f"{de} ist von {a[2]} bis {b[2]} Uhr geöffnet.",
    )


@_template(0.6)
def _t_closed_weekday(r: random.Random) -> Tri:
    en, fr, gender, de = r.choice(_SHOPS)
    c = r.choice(_CITIES)
    d = _weekday(r)
    closed = "fermée" if gender == "f" else "fermé"
    return (
        f"{en} in {c[0]} is closed on {_WEEKDAYS['en'][d]}s.",
        f"{fr} de {c[1]} est {closed} le {_WEEKDAYS['fr'][d]}.",
        f"{de} in {c[2]} ist {_WEEKDAYS['de'][d].lower()}s geschlossen.",
    )


@_template(0.6)
def _t_opened_year(r: random.Random) -> Tri:
    en, fr, _, de = r.choice(_SHOPS)
    c = r.choice(_CITIES)
    y = _year(r, past=True)
    return (
        f"{en} in {c[0]} opened in {y}.",
        f"{fr} de {c[1]} a ouvert en {y}.",
        f"{de} in {c[2]} wurde {y} eröffnet.",
    )


@_template(0.8)
def _t_every_weekday(r: random.Random) -> Tri:
    s = r.choice(_SUBJECTS)
    v = _conj("play", s[3])
    a = r.choice(_ACTIVITIES)
    d = _weekday(r)
    if r.random() < 0.5:
        name = _partner(r, s)
        return (
            f"{s[0]} {v[0]} {a[0]} with {name} every {_WEEKDAYS['en'][d]}.",
            f"{s[1]} {v[1]} {a[1]} avec {name} tous les {_WEEKDAYS['fr'][d]}s.",
            f"{s[2]} {v[2]} jeden {_WEEKDAYS['de'][d]} mit {name} {a[2]}.",
        )
    return (
        f"{s[0]} {v[0]} {a[0]} every {_WEEKDAYS['en'][d]}.",
        f"{s[1]} {v[1]} {a[1]} tous les {_WEEKDAYS['fr'][d]}s.",
        f"{s[2]} {v[2]} jeden {_WEEKDAYS['de'][d]} {a[2]}.",
    )


@_template(0.8)
def _t_works(r: random.Random) -> Tri:
    s = r.choice(_SUBJECTS)
    v = _conj("work", s[3])
    c = r.choice(_CITIES)
    a = r.randrange(3)
    b = r.randrange(4, 7)
    en, fr, de = (_WEEKDAYS[lang] for lang in LANGS)
    return (
        f"{s[0]} {v[0]} in {c[0]} from {en[a]} to {en[b]}.",
        f"{s[1]} {v[1]} à {c[1]} du {fr[a]} au {fr[b]}.",
        f"{s[2]} {v[2]} von {de[a]} bis {de[b]} in {c[2]}.",
    )


@_template(0.8)
def _t_meal(r: random.Random) -> Tri:
    en, fr, de, first, last = r.choice(_MEALS)
    t = _clock(r, first, last)
    d = _weekday(r)
    return (
        f"On {_WEEKDAYS['en'][d]}s, {en} is served at {t[0]}.",
        f"Le {_WEEKDAYS['fr'][d]}, {fr} est servi à {t[1]}.",
        f"{_WEEKDAYS['de'][d].lower()}s wird {de} um {t[2]} Uhr serviert.",
    )


@_template(1.2)
def _t_appointment(r: random.Random) -> Tri:
    s = r.choice(_SUBJECTS)
    v = _conj("have", s[3])
    pro = r.choice(_PROFESSIONALS)
    t = _clock(r, 7, 19)
    d = _weekday(r)
    return (
        f"{s[0]} {v[0]} an appointment with {pro[0]} on {_WEEKDAYS['en'][d]} at {t[0]}.",
        f"{s[1]} {v[1]} rendez-vous {pro[1]} {_WEEKDAYS['fr'][d]} à {t[1]}.",
        f"{s[2]} {v[2]} am {_WEEKDAYS['de'][d]} um {t[2]} Uhr einen Termin {pro[2]}.",
    )


@_template(0.8)
def _t_trend(r: random.Random) -> Tri:
    en, fr, de = r.choice(_TRENDS)
    v = r.choice(_TREND_VERBS)
    p = _percent(r.randint(1, 40))
    y = _year(r, past=True)
    if r.random() < 0.5:
        c = r.choice(_COUNTRIES)["in"]
        return (
            f"{en} {v[0]} by {p[0]} {c[0]} in {y}.",
            f"{fr} ont {v[1]} de {p[1]} {c[1]} en {y}.",
            f"{de} sind {y} {c[2]} um {p[2]} {v[2]}.",
        )
    return (
        f"{en} {v[0]} by {p[0]} in {y}.",
        f"{fr} ont {v[1]} de {p[1]} en {y}.",
        f"{de} sind {y} um {p[2]} {v[2]}.",
    )


@_template(0.6)
def _t_population(r: random.Random) -> Tri:
    n = _number(r.randrange(100, 10000, 10))
    k = r.randrange(3)
    if k < 2:
        en, fr, de = r.choice(_SETTLEMENTS)
        if k == 0:
            return (
                f"{en} has {n[0]} inhabitants.",
                f"{fr} compte {n[1]} habitants.",
                f"{de} hat {n[2]} Einwohner.",
            )
        y = _year(r, past=True)
        return (  # German: verb second after the fronted year
            f"In {y}, {en} had {n[0]} inhabitants.",
            f"En {y}, {fr} comptait {n[1]} habitants.",
            f"{y} hatte {de} {n[2]} Einwohner.",
        )
    en, fr, de, en_n, fr_n, de_n = r.choice(_MEMBERS)
    return (
        f"{en} has {n[0]} {en_n}.",
        f"{fr} compte {n[1]} {fr_n}.",
        f"{de} hat {n[2]} {de_n}.",
    )


@_template(0.6)
def _t_weather(r: random.Random) -> Tri:
    m = r.randrange(12)
    w = r.choice(_WEATHER)
    c = r.choice(_EUROPEAN_CITIES if w[0] == "snows" else _CITIES)
    f = r.choice(_FREQUENCY)
    return (
        f"In {_MONTHS['en'][m]}, it {f[0]} {w[0]} in {c[0]}.",
        f"En {_MONTHS['fr'][m]}, il {w[1]} {f[1]} à {c[1]}.",
        f"Im {_MONTHS['de'][m]} {w[2]} es in {c[2]} {f[2]}.",
    )


@_template(0.4)
def _t_age(r: random.Random) -> Tri:
    s = r.choice(_SUBJECTS)
    n = r.randint(2, 90)
    be = _conj("be", s[3])
    have = _conj("have", s[3])
    if r.random() < 0.5:
        city = r.choice(_CITIES)
        live = _conj("live", s[3])
        return (
            f"{s[0]} {be[0]} {n} years old and {live[0]} in {city[0]}.",
            f"{s[1]} {have[1]} {n} ans et {live[1]} à {city[1]}.",
            f"{s[2]} {be[2]} {n} Jahre alt und {live[2]} in {city[2]}.",
        )
    return (
        f"{s[0]} {be[0]} {n} years old.",
        f"{s[1]} {have[1]} {n} ans.",
        f"{s[2]} {be[2]} {n} Jahre alt.",
    )


@_template(0.5)
def _t_drinks(r: random.Random) -> Tri:
    s = r.choice(_SUBJECTS)
    v = _conj("drink", s[3])
    drink = r.choice(_DRINKS)
    u = _unit(r.choice((1, 2, 3, Decimal("0.5"), Decimal("1.5"), Decimal("2.5"))), "volume-liter")
    if r.random() < 0.5:
        return (
            f"{s[0]} {v[0]} {u[0]} of {drink[0]} every day.",
            f"{s[1]} {v[1]} {u[1]} de {drink[1]} par jour.",
            f"{s[2]} {v[2]} jeden Tag {u[2]} {drink[2]}.",
        )
    return (
        f"{s[0]} {v[0]} {u[0]} of {drink[0]} every week.",
        f"{s[1]} {v[1]} {u[1]} de {drink[1]} par semaine.",
        f"{s[2]} {v[2]} jede Woche {u[2]} {drink[2]}.",
    )


# --------------------------------------------------------------------------- post-processing

_FR_ELISION = re.compile(r"\b(j|l|d|n|m|t|s|qu)(?:e|(?<=l)a) (?=[" + _FR_VOWELS + "])", re.I)
_FR_CONTRACTIONS = (  # safety net: templates normally write au/aux/du/des directly
    (re.compile(r"\bà les\b"), "aux"),
    (re.compile(r"\bà le\b"), "au"),
    (re.compile(r"\bde les\b"), "des"),
    (re.compile(r"\bde le\b"), "du"),
)


def _fix_french(text: str) -> str:
    """Apply French elision (je ai -> j'ai, le hôtel -> l'hôtel) and contractions."""
    text = _FR_ELISION.sub(r"\1'", text)
    for pattern, repl in _FR_CONTRACTIONS:
        text = pattern.sub(repl, text)
    return text


def _finish(text: str) -> str:
    """Plain spaces, single-spaced, capitalised first letter."""
    text = " ".join(_plain(text).split())
    return text[:1].upper() + text[1:]


def _render(r: random.Random) -> dict[str, str]:
    """Draw one template and render it in every language."""
    idx = r.choices(range(len(_TEMPLATES)), cum_weights=_CUM_WEIGHTS)[0]
    en, fr, de = _TEMPLATES[idx][1](r)
    return {"en": _finish(en), "fr": _finish(_fix_french(fr)), "de": _finish(de)}


def _cumulative(values: list[float]) -> list[float]:
    """Running sums of the template weights."""
    out, total = [], 0.0
    for v in values:
        total += v
        out.append(total)
    return out


_CUM_WEIGHTS = _cumulative([w for w, _ in _TEMPLATES])

# --------------------------------------------------------------------------- public API


def _check_direction(src: str, tgt: str) -> str:
    """Validate a direction and return the non-English language of the pair."""
    for lang in (src, tgt):
        if lang not in LANGS:
            raise ValueError(f"unsupported language {lang!r}; supported: {', '.join(LANGS)}")
    if (src == "en") == (tgt == "en"):
        raise ValueError(
            f"unsupported direction {src!r}->{tgt!r}; supported: en->fr, en->de, fr->en, de->en"
        )
    return tgt if src == "en" else src


def _generate_split(
    rng: random.Random, n: int, other: str, seen_en: set[str], seen_xx: set[str], split: str
) -> list[tuple[str, str]]:
    """Draw n new (en, other) pairs whose sides are unseen so far, updating the seen sets."""
    out: list[tuple[str, str]] = []
    max_tries = 20 * n + 1000
    tries = 0
    while len(out) < n:
        if tries >= max_tries:
            raise ValueError(
                f"could not draw {n} unique {split} pairs in {max_tries} tries; "
                "request fewer sentences"
            )
        tries += 1
        sent = _render(rng)
        en, xx = sent["en"], sent[other]
        if en in seen_en or xx in seen_xx:
            continue
        seen_en.add(en)
        seen_xx.add(xx)
        out.append((en, xx))
    return out


def generate_demo_pairs(
    src: str = "en",
    tgt: str = "fr",
    num_train: int = 30000,
    num_val: int = 500,
    num_test: int = 500,
    seed: int = 1234,
) -> dict[str, list[tuple[str, str]]]:
    """Deterministic (src, tgt) sentence pairs per split ('train', 'val', 'test')."""
    other = _check_direction(src, tgt)
    sizes = {"train": num_train, "val": num_val, "test": num_test}
    for split, n in sizes.items():
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"num_{split} must be a non-negative int, got {n!r}")
    seen_en: set[str] = set()
    seen_xx: set[str] = set()
    result: dict[str, list[tuple[str, str]]] = {}
    # test first, then val, then train, each from its own stream, so that the held-out
    # splits never depend on num_train and never share a sentence with train.
    for split in ("test", "val", "train"):
        rng = random.Random(f"seq2seq-demo:{seed}:{split}")
        pairs = _generate_split(rng, sizes[split], other, seen_en, seen_xx, split)
        result[split] = pairs if src == "en" else [(b, a) for a, b in pairs]
    return {split: result[split] for split in SPLITS}


def write_demo_corpus(
    directory: str | Path, src: str = "en", tgt: str = "fr", **kwargs: int
) -> Path:
    """Write {split}.{lang} files (one sentence per line, UTF-8, '\\n' endings) for every split into directory; return it."""  # noqa: E501
    pairs = generate_demo_pairs(src, tgt, **kwargs)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        for lang, side in ((src, 0), (tgt, 1)):
            lines = "".join(pair[side] + "\n" for pair in pairs[split])
            with open(out / f"{split}.{lang}", "w", encoding="utf-8", newline="\n") as fh:
                fh.write(lines)
    return out
