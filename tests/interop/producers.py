"""Inputs built the way their producers build them, not the way this package writes them: EMIT granules with the
netCDF4 library (named dimensions ``downtrack``, ``crosstrack``, ``bands``, ``ortho_y``, ``ortho_x`` at the root;
groups ``sensor_band_parameters`` and ``location``; ``_FillValue`` −9999 given at creation, as the EMIT SDS writes
them), and ENVI BIL files with the long headers airborne processors write (a description, a ``coordinate system
string``, band names, wavelengths and FWHM in braces over several lines)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

EMIT_FILL = -9999.0
UTM11_WKT = (
    'PROJCS["WGS_1984_UTM_Zone_11N",GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137.0,'
    '298.257223563]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]],PROJECTION["Transverse_Mercator"],'
    'PARAMETER["False_Easting",500000.0],PARAMETER["False_Northing",0.0],PARAMETER["Central_Meridian",-117.0],'
    'PARAMETER["Scale_Factor",0.9996],PARAMETER["Latitude_Of_Origin",0.0],UNIT["Meter",1.0]]'
)


def smooth_spectra(rows: int, cols: int, bands: int, seed: int = 0) -> np.ndarray:
    """(rows, cols, bands) float32 reflectance-like cubes: smooth in space and along the spectrum, in (0.02, 0.6)."""
    generator = np.random.default_rng(seed)
    wavelengths = np.linspace(0.0, 1.0, bands)
    grid_r, grid_c = np.meshgrid(np.linspace(0, 1, rows), np.linspace(0, 1, cols), indexing="ij")
    cube = np.zeros((rows, cols, bands), np.float64)
    for _ in range(3):
        weight = np.sin(np.pi * (generator.random() + grid_r * generator.random() * 2 + grid_c * generator.random()))
        spectrum = 0.2 + 0.15 * np.sin(2 * np.pi * (wavelengths * generator.uniform(0.5, 2) + generator.random()))
        cube += (0.5 + 0.5 * weight)[..., None] * spectrum
    return (0.02 + cube / 3).astype(np.float32)


def write_emit_granule(
    path: Path,
    *,
    rows: int = 12,
    cols: int = 10,
    bands: int = 24,
    fill_cols: int = 2,
    cube: np.ndarray | None = None,
    wavelengths: np.ndarray | None = None,
) -> np.ndarray:
    """An EMIT L2A reflectance granule written with netCDF4 as the EMIT SDS writes it; its left ``fill_cols``
    columns are fill. ``cube`` (downtrack, crosstrack, bands): the reflectance to write (default: smooth synthetic
    spectra), with its ``wavelengths``. Returns the cube as written."""
    import netCDF4

    if cube is None:
        cube = smooth_spectra(rows, cols, bands)
    rows, cols, bands = cube.shape
    cube[:, :fill_cols, :] = EMIT_FILL
    bad = {bands // 3, bands // 3 + 1}
    cube[fill_cols:, fill_cols:, sorted(bad)] = -0.01  # water-absorption bands, as EMIT marks them
    ortho_y, ortho_x = rows + 3, cols + 2
    with netCDF4.Dataset(path, "w", format="NETCDF4") as handle:
        handle.createDimension("downtrack", rows)
        handle.createDimension("crosstrack", cols)
        handle.createDimension("bands", bands)
        handle.createDimension("ortho_y", ortho_y)
        handle.createDimension("ortho_x", ortho_x)
        handle.ncei_template_version = "NCEI_NetCDF_Swath_Template_v2.0"
        handle.title = "EMIT L2A Estimated Surface Reflectance 60 m V001"
        handle.summary = "The Earth Surface Mineral Dust Source Investigation (EMIT) ..."
        handle.time_coverage_start = "2023-04-01T18:52:49+0000"
        handle.time_coverage_end = "2023-04-01T18:53:01+0000"
        handle.geotransform = np.asarray([-118.0006, 0.000542232520256367, -0.0, 34.0006, -0.0, -0.000542232520256367])
        handle.spatial_ref = 'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]]]'
        handle.product_version = "V001"
        variable = handle.createVariable(
            "reflectance", "f4", ("downtrack", "crosstrack", "bands"), fill_value=EMIT_FILL, zlib=True
        )
        variable.long_name = "Surface Reflectance"
        variable.units = "unitless"
        variable[:] = cube
        params = handle.createGroup("sensor_band_parameters")
        if wavelengths is None:
            wavelengths = np.linspace(381.0, 2493.0, bands).astype(np.float32)
        for name, values, units in (
            ("wavelengths", wavelengths, "nm"),
            ("fwhm", np.full(bands, 8.5, np.float32), "nm"),
            ("good_wavelengths", np.asarray([0 if b in bad else 1 for b in range(bands)], np.float32), "unitless"),
        ):
            param = params.createVariable(name, "f4", ("bands",))
            param.units = units
            param[:] = values
        location = handle.createGroup("location")
        grid_r, grid_c = np.indices((rows, cols), dtype=np.float64)
        for name, field_values, units in (
            ("lat", 34.0 - 0.0005 * grid_r, "degrees_north"),
            ("lon", -118.0 + 0.0005 * grid_c, "degrees_east"),
            ("elev", 100.0 + grid_r + grid_c, "m"),
        ):
            field = location.createVariable(name, "f8", ("downtrack", "crosstrack"), fill_value=EMIT_FILL)
            field.units = units
            field[:] = field_values
        glt_x = np.zeros((ortho_y, ortho_x), np.int32)
        glt_y = np.zeros((ortho_y, ortho_x), np.int32)
        glt_x[1 : rows + 1, 1 : cols + 1], glt_y[1 : rows + 1, 1 : cols + 1] = grid_c + 1, grid_r + 1
        for name, lookup in (("glt_x", glt_x), ("glt_y", glt_y)):
            glt = location.createVariable(name, "i4", ("ortho_y", "ortho_x"), fill_value=0)
            glt.long_name = f"GLT Sample Lookup ({name[-1]})"
            glt[:] = lookup
    return cube


def write_envi_bil(
    path: Path, *, rows: int = 10, cols: int = 12, bands: int = 30, dtype: str = "int16", byte_order: int = 1
) -> tuple[np.ndarray, str]:
    """An AVIRIS-style ENVI BIL file (``path`` is the data file; the header beside it is ``path.hdr``) in sensor
    integers, big-endian by default, with a long header: description over several lines, map info in UTM with a
    ``coordinate system string``, wavelength/fwhm/band names/bbl in braces wrapped at 80 columns. Returns the cube
    (bands, rows, cols) as written and the header text."""
    cube = smooth_spectra(rows, cols, bands, seed=3)
    values = np.transpose((cube * 10000).round().astype(dtype), (2, 0, 1))  # (bands, rows, cols)
    values[:, 0, 0] = -9999
    values[2, 3, 4] = -37  # a valid negative value in a good band (L1B radiance noise does this)
    stored = np.dtype(dtype).newbyteorder(">" if byte_order == 1 else "<")
    np.ascontiguousarray(np.transpose(values, (1, 0, 2))).astype(stored).tofile(path)
    wavelengths = [f"{w:.6f}" for w in np.linspace(376.86, 2496.24, bands)]
    names = [f"Band {b + 1}: {w} Nanometers" for b, w in enumerate(wavelengths)]

    def braces(items: list[str]) -> str:
        lines, line = [], ""
        for item in items:
            piece = f"{item}, "
            if len(line) + len(piece) > 78:
                lines.append(line.rstrip())
                line = ""
            line += piece
        lines.append(line.rstrip().rstrip(","))
        return "{\n " + "\n ".join(lines) + "}"

    data_type = {"int16": 2, "uint16": 12, "float32": 4}[dtype]
    header = "\n".join(
        [
            "ENVI",
            "description = {",
            "  AVIRIS-NG L1B radiance, orthocorrected, test subset [Mon Jun  5 10:11:12 2017]",
            "  Processing: ang_pge v2.3, calibration 2017-03, units uW nm-1 cm-2 sr-1 * 1000}",
            f"samples = {cols}",
            f"lines   = {rows}",
            f"bands   = {bands}",
            "header offset = 0",
            "file type = ENVI Standard",
            f"data type = {data_type}",
            "interleave = bil",
            f"byte order = {byte_order}",
            "map info = { UTM , 1.000 , 1.000 , 724522.127 , 3841633.994 , 1.5000000000e+01 , 1.5000000000e+01 , "
            "11 , North , WGS-84 , units=Meters , rotation=0.00000000 }",
            f"coordinate system string = {{{UTM11_WKT}}}",
            "data ignore value = -9999",
            "sensor type = AVIRIS-NG",
            f"wavelength = {braces(wavelengths)}",
            f"fwhm = {braces(['5.500000'] * bands)}",
            f"band names = {braces(names)}",
            f"bbl = {braces(['0' if b in (bands // 2, bands // 2 + 1) else '1' for b in range(bands)])}",
            "wavelength units = Nanometers",
            "acquisition time = 2017-03-23T20:22:44Z",
            "",
        ]
    )
    Path(f"{path}.hdr").write_text(header)
    return values, header
