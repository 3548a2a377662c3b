// S3Storage: ObjectStorage over the S3 REST API (placeholder while the driver is written).
import ObjectStorage
