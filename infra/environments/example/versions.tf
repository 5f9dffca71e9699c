terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 8.0"
    }
    time = {
      source  = "hashicorp/time"
      version = ">= 0.9, < 1.0"
    }
  }

  # Keep state in a bucket of the environment's project, e.g.:
  # backend "gcs" {
  #   bucket = "PROJECT-tfstate"
  #   prefix = "telemetry-jobs"
  # }
}

provider "google" {
  project = var.project
  region  = var.region
}
