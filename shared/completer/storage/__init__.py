"""Reading uploaded objects from object stores, with their errors translated in one place."""
