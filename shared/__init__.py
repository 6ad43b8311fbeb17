"""What the API and the workers share: settings, the job table, object storage, the queue, errors."""
