"""Processing: what happens to the pixels. Pure: no Redis, no HTTP, no database.

operations.py   one function per job type, ``(data, options, tools) -> Output``
cutouts.py      background removal to a spec: mask, confidence, edge, layout, outputs (zip, mask), report
layout.py       a cut-out's placement (crop, margin, canvas, scale, position), background, shadow, edges
confidence.py   how sure a mask is, from the mask alone (``review`` under the threshold)
marketplace.py  the compliance report of a cut-out against a marketplace preset (imgproc.presets)
imaging.py      decode (bounded, EXIF-upright), resize, encode (PNG in strips, JPEG, WebP)
crop.py         face-crop geometry: the box around a face, windows, merging detections
models.py       BackgroundRemover (ISNet on ONNX Runtime), FaceDetector (BlazeFace, face mesh), Protocols
landmarks.py    eyes, chin and crown of a head, and the affine frames they are measured in
idphoto.py      an ID photo to a preset (imgproc.presets): level, matte the region, place, encode
compliance.py   the compliance report of an ID photo
"""
