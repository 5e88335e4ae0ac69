"""The 72 countries with a Spotify daily Top 50 chart: the one source of truth.

The real dump has 73 charts: these 72 plus the global chart, whose `country`
is empty. The global chart is not one of the model's outputs.
"""

COUNTRIES: tuple[str, ...] = tuple(
    """
    AE AR AT AU BE BG BO BR BY CA CH CL CO CR CZ DE DK DO EC EE EG ES FI FR
    GB GR GT HK HN HU ID IE IL IN IS IT JP KR KZ LT LU LV MA MX MY NG NI NL
    NO NZ PA PE PH PK PL PT PY RO SA SE SG SK SV TH TR TW UA US UY VE VN ZA
    """.split()
)
assert len(COUNTRIES) == 72 and len(set(COUNTRIES)) == 72

# How the global chart's `country` is stored in the lake (the dump leaves it empty).
GLOBAL_CHART = ""

CHART_SIZE = 50  # ranks 1..50 on every chart day

# Regions group countries whose listeners share a taste; the generator's hidden
# truth uses them, and reports may group by them.
REGIONS: dict[str, tuple[str, ...]] = {
    "latam": ("AR", "BO", "BR", "CL", "CO", "CR", "DO", "EC", "GT", "HN", "MX",
              "NI", "PA", "PE", "PY", "SV", "UY", "VE"),
    "anglo": ("AU", "CA", "GB", "IE", "NZ", "US", "ZA", "NG"),
    "west_europe": ("AT", "BE", "CH", "DE", "DK", "FI", "FR", "IS", "LU", "NL",
                    "NO", "SE"),
    "south_europe": ("ES", "GR", "IT", "PT", "TR", "IL"),
    "east_europe": ("BG", "BY", "CZ", "EE", "HU", "KZ", "LT", "LV", "PL", "RO",
                    "SK", "UA"),
    "asia": ("HK", "ID", "IN", "JP", "KR", "MY", "PH", "PK", "SG", "TH", "TW",
             "VN"),
    "mena": ("AE", "EG", "MA", "SA"),
}
assert sorted(c for cs in REGIONS.values() for c in cs) == sorted(COUNTRIES)

REGION_OF: dict[str, str] = {c: r for r, cs in REGIONS.items() for c in cs}
