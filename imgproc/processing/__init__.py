"""Processing: what happens to the pixels. Pure: no Redis, no HTTP, no database.

operations.py   one function per job type, ``(data, options, tools) -> Output``
imaging.py      decode (bounded, EXIF-upright), resize, encode (PNG in strips, JPEG, WebP)
crop.py         face-crop geometry: the box around a face, windows, merging detections
models.py       BackgroundRemover (ISNet on ONNX Runtime), FaceDetector (BlazeFace, face mesh), Protocols
landmarks.py    eyes, chin and crown of a head, and the affine frames they are measured in
idphoto.py      an ID photo to a preset (imgproc.presets): level, matte the region, place, encode
compliance.py   the compliance report of an ID photo
"""
