"""Stream processing: canonical events from Kafka into the warehouse, in batches."""
