#include "common/job_data.h"

namespace pstrain {

StatusOr<JobData> LoadJobData(const DataConfig& data) {
  JobData d;
  if (data.format == "idx") {
    ASSIGN_OR_RETURN(d.train, ReadIdxDataset(data.train_images, data.train_labels));
    ASSIGN_OR_RETURN(d.test, ReadIdxDataset(data.test_images, data.test_labels));
  } else {
    CsvOptions o;
    o.label_column = data.label_column;
    o.header = data.header;
    ASSIGN_OR_RETURN(d.train, ReadCsvDataset(data.train, o));
    ASSIGN_OR_RETURN(d.test, ReadCsvDataset(data.test, o));
  }
  RETURN_IF_ERROR(ReconcileDatasets(&d.train, &d.test));
  return d;
}

}  // namespace pstrain
