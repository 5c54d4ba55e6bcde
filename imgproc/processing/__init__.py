"""Processing: what happens to the pixels. Pure: no Redis, no HTTP, no database.

operations.py   one function per job type, ``(data, options, tools) -> Output``
imaging.py      decode (bounded, EXIF-upright), resize, encode (PNG in strips, JPEG, WebP)
crop.py         face-crop geometry: the box around a face, windows, merging detections
models.py       BackgroundRemover (ISNet on ONNX Runtime), FaceDetector (BlazeFace), their Protocols
"""
