function read_sendexternal(dat_path, out_path)
% READ_SENDEXTERNAL  Read a SendExternal .dat file by the parsing rules of the published
% reader, and write what it sees for the Python test to compare.
%
% This is not the published file. The TrackRAD2025 organisers' ConvertSendExternalToMatlabVolume.m
% (PeterT1000/trackrad2025, derived from ViewRay's code; the repository states no licence,
% so it is not copied here) is re-implemented from its documented behaviour, rule by rule:
%
%   1. a record is int32 header_size, int32 data_size (ignored), header_size bytes of
%      ASCII header, then rows x cols int16 pixels; header_size 0 (or the end of the
%      file) ends the stream;
%   2. all whitespace is removed from the header (sscanf '%s');
%   3. a key's value is found with strfind: it starts one character after the key (the
%      '='), and only the 6 characters from there are read, with sscanf ('%d' for the
%      sizes, '%f' for the rest); a missing key leaves an empty value, and storing it
%      stops the reader with an error;
%   4. the keys read are DICOM.NoOfRows, DICOM.NoOfCols, DICOM.PosVec.0/1/2,
%      DICOM.SliceThickness, DICOM.SliceLocation, DICOM.PixelSpacing.0/1;
%   5. the pixels fill a rows x cols matrix column by column, which is then mirrored
%      left-right (flip(image, 2)).
%
% out_path receives: int32 [n_frames rows cols], the frames as int16 in MATLAB order of an
% (n_frames, rows, cols) array, then per frame the 7 values read in rule 4 after the sizes,
% as float64. On an error the reader prints "reader error: <message>" and exits 1.
  keys = {'DICOM.PosVec.0', 'DICOM.PosVec.1', 'DICOM.PosVec.2', 'DICOM.SliceThickness', ...
          'DICOM.SliceLocation', 'DICOM.PixelSpacing.0', 'DICOM.PixelSpacing.1'};
  fid = fopen(dat_path, 'rb');
  if fid < 0
    printf('reader error: cannot open %s\n', dat_path);
    exit(1);
  end
  values = zeros(0, numel(keys));
  volume = [];
  n = 0;
  try
    while true
      header_size = fread(fid, 1, 'int32');
      if isempty(header_size) || header_size == 0
        break;
      end
      fread(fid, 1, 'int32');
      header = fread(fid, header_size, 'int8');
      tags = sscanf(char(header'), '%s');
      n = n + 1;
      rows(n) = value_after(tags, 'DICOM.NoOfRows', '%d');
      cols(n) = value_after(tags, 'DICOM.NoOfCols', '%d');
      for k = 1:numel(keys)
        values(n, k) = value_after(tags, keys{k}, '%f');
      end
      image = fread(fid, rows(n) * cols(n), 'int16');
      image = flip(reshape(image, rows(n), cols(n)), 2);
      volume(n, :, :) = image;
    end
  catch err
    fclose(fid);
    printf('reader error: %s\n', err.message);
    exit(1);
  end
  fclose(fid);
  out = fopen(out_path, 'wb');
  fwrite(out, int32([n, size(volume, 2), size(volume, 3)]), 'int32');
  fwrite(out, volume(:), 'int16');
  fwrite(out, values', 'float64');
  fclose(out);
end

function value = value_after(tags, key, format)
  at = strfind(tags, key);
  first = at + numel(key) + 1;
  last = first + 5;
  if last > numel(tags)
    last = numel(tags);
  end
  value = sscanf(tags(first:last), format);
end
