"""The tables of presets: ID photos (API.md "ID-photo presets") and marketplace main images
("Marketplace presets"), what a standard or a marketplace asks of a picture.

A preset is read by three floors: the API validates ``preset`` and fills a
job's options from it (``imgproc.jobtypes``), the worker places the crop and
checks the result (``imgproc.processing.idphoto``, ``.marketplace``), and
``GET /api/image-queue/presets`` lists the tables as they are here. ID-photo
ranges are fractions of the output's height: the head runs from the chin to
the crown (hair included), the eye line is measured from the bottom edge,
the top margin is the gap between the crown and the top edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Range = tuple[float, float]

#: The paper of ``sheet: true`` (a 4x6 in print, what photo kiosks and labs print) and its resolution.
SHEET_INCHES = (6.0, 4.0)
SHEET_DPI = 300


@dataclass(frozen=True)
class Preset:
    """An ID-photo standard: output size, the head's geometry, background, file format and size."""

    name: str
    title: str
    width_mm: float
    height_mm: float
    dpi: int
    head: Range
    eye_line: Range
    top_margin: Range
    bgcolor: str
    format: str = "jpg"
    #: File size in KB (min, max) where the standard has one; met under both readings of a KB
    #: (1,000 or 1,024 bytes): at least ``min * 1024`` and at most ``max * 1000`` bytes.
    file_kb: Range | None = None
    #: Most roll (head tilt) left after levelling, in degrees (ISO/IEC 19794-5: 8).
    roll_max: float = 8.0
    #: Most horizontal offset of the head's centre from the output's centre, as a fraction of the width.
    centre_max: float = 0.05
    #: Most standard deviation (0-255) of the background next to the head.
    background_std_max: float = 12.0
    #: Where the numbers come from.
    source: str = ""

    @property
    def pixels(self) -> tuple[int, int]:
        """Width and height of the output in pixels: the millimetres at the preset's dpi."""
        return round(self.width_mm / 25.4 * self.dpi), round(self.height_mm / 25.4 * self.dpi)

    @property
    def aspect(self) -> str:
        width, height = self.pixels
        return f"{width}:{height}"

    @property
    def byte_range(self) -> tuple[int, int] | None:
        """The file-size range in bytes that satisfies ``file_kb`` whichever a KB is."""
        if self.file_kb is None:
            return None
        return round(self.file_kb[0] * 1024), round(self.file_kb[1] * 1000)

    @property
    def fits_sheet(self) -> bool:
        """Whether one copy fits on the print sheet, either way round."""
        w, h = self.width_mm / 25.4, self.height_mm / 25.4
        long, short = max(SHEET_INCHES), min(SHEET_INCHES)
        return (w <= long and h <= short) or (w <= short and h <= long)

    def asdict(self) -> dict[str, Any]:
        """The preset as ``GET /api/image-queue/presets`` lists it."""
        width, height = self.pixels
        return {
            "name": self.name,
            "title": self.title,
            "mm": [self.width_mm, self.height_mm],
            "pixels": [width, height],
            "dpi": self.dpi,
            "head_height": list(self.head),
            "eye_line_from_bottom": list(self.eye_line),
            "top_margin": list(self.top_margin),
            "roll_max": self.roll_max,
            "bgcolor": self.bgcolor,
            "format": self.format,
            "file_kb": list(self.file_kb) if self.file_kb else None,
            "source": self.source,
        }


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "us-passport",
            "US passport and visa, 2x2 in",
            50.8,
            50.8,
            300,
            head=(0.50, 0.69),  # 1 to 1 3/8 in of 2 in
            eye_line=(0.56, 0.69),  # 1 1/8 to 1 3/8 in from the bottom
            top_margin=(0.04, 0.25),
            bgcolor="#ffffff",
            source="travel.state.gov photo rules: head 1-1 3/8 in, eyes 1 1/8-1 3/8 in from the bottom",
        ),
        Preset(
            "icao-35x45",
            "35x45 mm passport (ICAO 9303: Schengen, UK and most countries)",
            35.0,
            45.0,
            300,
            head=(0.71, 0.80),  # 32-36 mm of 45 mm
            eye_line=(0.50, 0.70),  # ISO/IEC 19794-5
            top_margin=(0.03, 0.12),
            bgcolor="#f0f0f0",
            source="ICAO 9303 part 3 and ISO/IEC 19794-5 (chin to crown 70-80%, eyes 50-70% from the bottom)",
        ),
        Preset(
            "china-id",
            "China resident identity card, 26x32 mm (GA 461)",
            26.0,
            32.0,
            350,
            head=(0.62, 0.78),  # about 20-25 mm of 32 mm
            eye_line=(0.50, 0.64),
            top_margin=(0.05, 0.16),  # about 2-5 mm
            bgcolor="#ffffff",
            file_kb=(14, 20),
            source="GA 461 as summarised for uploads (358x441 px, 350 dpi, JPEG 14-20 KB); "
            "the head and eye ranges are this service's reading, check them with the issuer",
        ),
        Preset(
            "avatar",
            "Square avatar or staff-card photo, 512x512 px",
            180.6,
            180.6,
            72,
            head=(0.50, 0.65),
            eye_line=(0.50, 0.62),
            top_margin=(0.06, 0.22),
            bgcolor="#ffffff",
            source="imgproc's own: the head large and centred, room above the hair",
        ),
    )
}


def preset_options(preset: Preset) -> dict[str, Any]:
    """The face-crop options a preset sets (API.md ``preset``); a job's own options override them."""
    return {
        "aspect": preset.aspect,
        "size": list(preset.pixels),
        "remove_background": True,
        "bgcolor": preset.bgcolor,
        "format": preset.format,
    }


@dataclass(frozen=True)
class MarketplacePreset:
    """A marketplace's main-image rules (API.md "Marketplace presets"): the layout that meets them, and
    the limits the compliance report (``imgproc.processing.marketplace``) checks the result against.

    A limit of None is one the marketplace's published rules do not set: it is not checked. What a
    marketplace recommends rather than requires (``recommended_side``, ``background_advice``, a cut
    subject where ``whole_subject`` is false) goes into the report's ``advice``, never its failures.
    """

    name: str
    title: str
    #: ``[width, height]`` of the output canvas.
    canvas: tuple[int, int]
    #: The subject's longest side as a share of the canvas' matching side that the layout aims at, and
    #: the least the rules allow.
    scale: float = 0.9
    min_fill: float | None = None
    #: Least, recommended (for zoom) and most pixels of the image: ``min_side`` and
    #: ``recommended_side`` on the side named by ``side``, ``max_side`` on the longest.
    min_side: int | None = None
    recommended_side: int | None = None
    max_side: int | None = None
    bgcolor: str = "#ffffff"
    #: Whether every pixel outside the subject must be exactly ``bgcolor`` (Amazon's pure white).
    pure_background: bool = True
    format: str = "jpg"
    #: Where the rules come from.
    source: str = ""
    #: ``longest``: the sizes are read on the longest side (Amazon's "1,000 px on the longest side");
    #: ``shortest``: a rule written "W x H px" on a square, met when both sides are that long.
    side: str = "longest"
    #: Width and height of a required aspect ratio (met within ``ASPECT_TOLERANCE``).
    aspect: tuple[int, int] | None = None
    #: The output formats the marketplace accepts, of those remove-bg writes (a zip's ``color.jpg``
    #: counts as jpg).
    formats: tuple[str, ...] = ("jpg",)
    #: Whether the rules ask for sRGB (our encoder writes no ICC profile: sRGB by convention).
    srgb: bool = True
    #: Whether a subject cut by the frame's edge fails (the rules ask for the whole product) or is
    #: only reported as advice.
    whole_subject: bool = True
    #: Where the background need not be exact: whether the rules still ask for a plain ``bgcolor``, so
    #: that pixels of another colour are reported as advice.
    background_advice: bool = False
    #: Largest file in MB (read as 1,000,000 bytes, which meets either reading) and most megapixels.
    max_file_mb: float | None = None
    max_megapixels: float | None = None

    def asdict(self) -> dict[str, Any]:
        """The preset as ``GET /api/image-queue/presets`` lists it (the endpoint adds its job type)."""
        return {
            "name": self.name,
            "title": self.title,
            "pixels": list(self.canvas),
            "scale": self.scale,
            "min_fill": self.min_fill,
            "side": self.side,
            "min_side": self.min_side,
            "recommended_side": self.recommended_side,
            "max_side": self.max_side,
            "aspect": list(self.aspect) if self.aspect else None,
            "max_megapixels": self.max_megapixels,
            "max_file_mb": self.max_file_mb,
            "bgcolor": self.bgcolor,
            "pure_background": self.pure_background,
            "background_advice": self.background_advice,
            "whole_subject": self.whole_subject,
            "srgb": self.srgb,
            "format": self.format,
            "formats": list(self.formats),
            "source": self.source,
        }


#: How far an output's width over height may be from a preset's ``aspect``, relative: Zalando's 1:1.44
#: and its own 1801x2600 px and 762x1100 px differ by 0.3%.
ASPECT_TOLERANCE = 0.01

MARKETPLACES: dict[str, MarketplacePreset] = {
    p.name: p
    for p in (
        MarketplacePreset(
            "amazon-main",
            "Amazon main image, 2000x2000 px on pure white",
            canvas=(2000, 2000),
            scale=0.9,
            min_fill=0.85,
            min_side=1000,
            recommended_side=1600,
            max_side=10_000,
            source="Amazon Seller Central, Product image requirements: pure white background "
            "(RGB 255, 255, 255), the product fills 85% or more of the frame, 1,000 px or more on the "
            "longest side (1,600 px or more for zoom), 10,000 px at most, JPEG preferred, sRGB or CMYK",
        ),
        MarketplacePreset(
            "ebay-main",
            "eBay listing photo, 1600x1600 px",
            canvas=(1600, 1600),
            min_side=500,
            recommended_side=1000,
            pure_background=False,
            formats=("jpg", "png", "webp"),
            srgb=False,
            whole_subject=False,
            source="eBay Help, Picture policy: photos must be at least 500 px on the longest side; no "
            "added borders, text or watermarks (not checked here). eBay developer knowledge base, "
            "article 1489 (UploadSiteHostedPictures warnings): eBay recommends at least 1,000 px on "
            "the longest side and JPEG quality 90 or more (a recommendation: advice). eBay Media API, "
            "createImageFromFile: JPG, GIF, PNG, BMP, TIFF, AVIF, HEIC and WEBP accepted. No "
            "background colour is required; the 1600x1600 canvas is this service's choice",
        ),
        MarketplacePreset(
            "walmart-main",
            "Walmart Marketplace main image, 2200x2200 px on seamless white",
            canvas=(2200, 2200),
            min_side=1500,
            recommended_side=2200,
            side="shortest",
            aspect=(1, 1),
            formats=("jpg", "png"),
            whole_subject=False,
            max_file_mb=5,
            source="Walmart Marketplace Learn, Product detail page: Image guidelines & requirements: "
            "JPEG, JPG, PNG or BMP; RGB; 5 MB or less; pixel dimensions 2200 x 2200 px (read here as "
            "the recommendation), minimum 1500 x 1500 px for zoom; aspect ratio 1:1; background "
            "seamless white (255/255/255 RGB). The page sets no fill share",
        ),
        MarketplacePreset(
            "google-shopping",
            "Google Merchant Center image_link, 1500x1500 px",
            canvas=(1500, 1500),
            min_side=500,
            recommended_side=1500,
            side="shortest",
            pure_background=False,
            formats=("jpg", "webp", "png"),
            srgb=False,
            whole_subject=False,
            max_file_mb=16,
            max_megapixels=64,
            source="Google Merchant Center Help, Image link [image_link]: at least 500 x 500 px (the "
            "requirement announced for all products from 31 January 2027; until then 100 x 100 px, "
            "250 x 250 px for apparel), 1500 x 1500 px or more recommended, at most 64 megapixels and "
            "16 MB; JPEG, WebP, PNG, GIF, BMP or TIFF",
        ),
        MarketplacePreset(
            "shopify-product",
            "Shopify product image, 2048x2048 px",
            canvas=(2048, 2048),
            recommended_side=2048,
            max_side=4472,
            pure_background=False,
            formats=("jpg", "png"),
            srgb=False,
            whole_subject=False,
            max_megapixels=20,
            source="Shopify developer docs, Manage media for products (MediaImage): PNG, GIF or JPG, at "
            "most 4472 x 4472 px or 20 megapixels; 2048 x 2048 px for square images (a "
            "recommendation: advice). Shopify sets no background or minimum size",
        ),
        MarketplacePreset(
            "zalando-packshot",
            "Zalando packshot, 1801x2600 px (1:1.44) on white",
            canvas=(1801, 2600),
            min_side=1100,
            recommended_side=2600,
            pure_background=False,
            background_advice=True,
            aspect=(100, 144),
            srgb=False,
            whole_subject=False,
            max_file_mb=20,
            source="Zalando Partner University, Zalando image guidelines (technical image "
            "requirements): aspect ratio 1:1.44 (width x height), upright; best practice 1801 x "
            "2600 px, minimum 762 x 1100 px; JPG/JPEG; at most 20 MB. Primary packshots must have a "
            "white background within the page's colour range, whose numbers are not checked here: a "
            "background other than exact white is advice",
        ),
    )
}


def marketplace_options(preset: MarketplacePreset) -> dict[str, Any]:
    """The remove-bg options a marketplace preset sets; a job's own options override them."""
    return {
        "crop": True,
        "canvas": list(preset.canvas),
        "scale": preset.scale,
        "position": "center",
        "bgcolor": preset.bgcolor,
        "format": preset.format,
    }
